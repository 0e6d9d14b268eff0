"""What every stage's command line shares: one JSON object on stdout, notes on stderr, the queue woken first.

The stages' ``cli`` modules (``segcore.training.cli``, ``segcore.evaluation.cli``,
``segcore.prediction.cli``) use these; ``segcore.cli`` gathers the commands.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any, Callable


def print_json(obj: Any) -> None:
    """Print ``obj`` as one line of JSON on stdout (numpy values as plain numbers, anything else as text)."""
    print(json.dumps(obj, default=_default), flush=True)


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def err(message: str) -> None:
    """A progress line or note for people, on stderr (stdout stays for results)."""
    print(message, file=sys.stderr, flush=True)


def waking(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``handler`` preceded by a look at the run queue: waiting runs and no worker start one.

    Every command about runs (train, runs, eval, predict, stop, resume, sweep)
    is wrapped so, so a killed worker never leaves the queue stalled.
    """

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from segcore.queue.launcher import wake_queue
        from segcore.workspace import get_workspace

        if wake_queue(get_workspace()):
            err("started a queue worker for the runs waiting in the queue")
        return handler(args)

    return run
