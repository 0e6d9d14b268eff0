"""The ``eval`` command: a run's model scored on its test split, or on another dataset with the same classes.

``--json`` prints exactly one JSON object on stdout; notes go to stderr.
"""

from __future__ import annotations

import argparse
from typing import Any

from segcore.cliutil import print_json, waking


def cmd_eval(args: argparse.Namespace) -> int:
    from segcore.runs import open_run

    run = open_run(args.run)
    checkpoint = getattr(args, "checkpoint", "best")
    if args.dataset:
        from segcore.evaluation.run import evaluate_on_dataset

        report = evaluate_on_dataset(run, args.dataset, subset=args.subset, checkpoint=checkpoint)
    elif args.subset:
        raise ValueError("--subset needs --dataset (the run's own test split is evaluated without them)")
    elif args.cached:
        if checkpoint != "best":
            raise ValueError("--cached prints evaluation.json, the best checkpoint's figures; leave out --checkpoint")
        report = run.read_evaluation()
        if report is None:
            raise FileNotFoundError(f"run {run.run_id} has no evaluation.json yet (state {run.true_status().get('state')})")
    else:
        from segcore.evaluation.run import evaluate_run

        report = evaluate_run(run, write=args.write, checkpoint=checkpoint)
    if args.json:
        print_json(report)
    else:
        # The report as JSON (evaluation.json, or one just written as it): printed from its keys.
        from segcore.labels import Labels

        meaning = Labels.of_report(report)
        print(f"scored at the labels' own resolution: {report.get('resolution') == 'native'}; "
              f"{report.get('num_images')} images; {report.get('checkpoint', 'best')} checkpoint")
        for avg, words in (("all", "all classes (ranks runs)"), ("macro", meaning.macro_caption()), ("micro", meaning.micro_caption())):
            block = report.get(avg) or {}
            if block:
                print(f"{avg}: " + ", ".join(f"{k} {v:.4f}" for k, v in block.items() if isinstance(v, (int, float)))
                      + f"   [{words}]")
        ece = (report.get("calibration") or {}).get("ece")
        if ece is not None:
            print(f"calibration: ECE {ece:.4f}")
        for row in report.get("per_class") or []:
            print(f"  {row.get('name')}: dice {_num(row.get('dice'))}, iou {_num(row.get('iou'))}"
                  + (f", hd95 {_num(row.get('hd95'))} px, nsd {_num(row.get('nsd'))}" if "hd95" in row else ""))
        for warning in report.get("warnings") or []:
            print(f"warning: {warning}")
    return 0


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def register(subparsers) -> None:
    """Add the ``eval`` command to the ``python -m segcore`` parser."""
    p = subparsers.add_parser("eval", help="evaluate a run's best model on its test split")
    p.add_argument("run")
    p.add_argument("--cached", action="store_true", help="print evaluation.json instead of recomputing")
    p.add_argument("--write", action="store_true", help="rewrite evaluation.json and the prediction cache")
    p.add_argument("--dataset", help="evaluate on this dataset (same classes) instead of the run's test split; "
                   "kept in the run folder as evaluations/<dataset>[-<subset>].json")
    p.add_argument("--subset", help="with --dataset: only its samples of this subset (e.g. test)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: the epoch with the best validation score (what every page uses); last: the final "
                   "epoch's weights, which no validation score chose (printed, not kept)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=waking(cmd_eval))
