"""``python -m segcore``: the command line, usable without the dashboard.

Each stage owns its subcommands in its own ``cli`` module, which exposes
``register(subparsers)``; this module only gathers them. Those modules import
Keras and the other heavy packages inside their commands, so ``--help`` and
the data commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from segcore.fsutil import describe_os_error, is_write_refused

# The stages' cli modules, in the order their commands appear in --help.
_STAGES = (
    "segcore.data.cli",
    "segcore.models.cli",
    "segcore.training.cli",
    "segcore.evaluation.cli",
    "segcore.prediction.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m segcore", description="segcore: U-Net segmentation workbench")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _STAGES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as exc:
        # Errors for users: one line naming what was wrong, no stack trace.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 1
    except OSError as exc:
        if not is_write_refused(exc):
            raise
        # A read-only or full workspace: one line naming the folder.
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
