"""Command line for runs: train, runs, stop, resume, sweep.

(``eval`` is in ``segcore.evaluation.cli``, ``predict`` in ``segcore.prediction.cli``.)

``--json`` prints exactly one JSON object (or list) on stdout; progress and
logs go to stderr.

Every run command first makes sure a queue worker serves any waiting runs
(``wake_queue``), so a killed worker never leaves the queue stalled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from segcore.cliutil import err as _err
from segcore.cliutil import print_json as _print_json
from segcore.cliutil import waking as _waking
from segcore.config import Declared, RunConfig, declared, from_dict, with_settings
from segcore.runs import LISTED_STATES
from segcore.queue.sweep import PAPER_SET


# -- settings from a config file and flags ---------------------------------------------


def parse_budget(text: str) -> float:
    """A time budget in minutes from ``10m``, ``90s``, ``1.5h`` or a bare number of minutes."""
    value = str(text).strip().lower()
    units = {"s": 1 / 60.0, "m": 1.0, "min": 1.0, "h": 60.0}
    for suffix in ("min", "s", "m", "h"):
        if value.endswith(suffix):
            number, factor = value[: -len(suffix)], units[suffix]
            break
    else:
        number, factor = value, 1.0
    try:
        minutes = float(number) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget {text!r} is not a time; expected e.g. 10m, 90s, 1.5h or minutes") from None
    if not minutes > 0:
        raise argparse.ArgumentTypeError(f"budget {text!r} must be more than 0")
    return minutes


def _ids(text: str) -> tuple[str, ...]:
    """Comma-separated ids or ranges (``1-27,30``) as a tuple."""
    return tuple(x.strip() for x in str(text).split(",") if x.strip())


def _devices_arg(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'all' or a whole number of devices") from None


# How a flag's text becomes the setting's value: by the field's type, or the Setting's ``parse``.
# A value that parses is then checked by the settings themselves (``segcore.config``), so a bad one is
# named the same way from a flag, a config file or the Train page.
_PARSERS = {
    "int": int, "float": float, "float | None": float, "str": str, "str | None": str,
    "int | str": _devices_arg, "tuple[str, ...]": _ids, "duration": parse_budget,
}
_GROUPS = {"ModelConfig": "model", "TrainConfig": "training", "AugmentConfig": "augmentation", "SplitConfig": "split"}


def settings_flags(root: type | None = None, *, sweep: bool = False) -> list[Declared]:
    """The settings with a command-line flag (for ``sweep``: those the encoder study takes)."""
    return [d for d in declared(root) if d.flag is not None and (d.meta.sweep or not sweep)]


def _add_settings(p: argparse.ArgumentParser, *, sweep: bool = False, root: type | None = None) -> None:
    """One flag per setting, generated from the settings' declarations (``segcore.config.Setting``)."""
    groups: dict[str, Any] = {}
    for d in settings_flags(root, sweep=sweep):
        group_name = next((g for cls, g in _GROUPS.items() if any(c.__name__ == cls for c in d.owner.__mro__)), "")
        where = p if not group_name else groups.setdefault(group_name, p.add_argument_group(group_name))
        meta = d.meta
        help_text = meta.help + (f" (default {_shown(d.default)})" if d.default not in (None, (), "") and not d.is_bool else "")
        kw: dict[str, Any] = {"dest": d.dest, "help": help_text}
        if meta.switch is not None:
            kw.update(action="store_const", const=meta.switch)
        elif d.is_bool:
            kw.update(action=argparse.BooleanOptionalAction, default=None)
        else:
            # a repeated flag gives one item of the list each time
            parse = str if meta.repeat and not meta.parse else _PARSERS.get(meta.parse or d.annotation)
            if parse is None:
                raise TypeError(f"setting {d.path}: no parser for {meta.parse or d.annotation!r}; give its Setting a parse")
            kw.update(type=parse, metavar=meta.metavar or ("{" + ",".join(map(str, meta.choices)) + "}" if meta.choices else None))
            if meta.repeat:
                kw.update(action="append", default=[])
        where.add_argument(d.flag, *meta.aliases, **kw)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def settings_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """A RunConfig from an optional config file (``args.config``) overridden by flags."""
    cfg = base or RunConfig()
    config_path = getattr(args, "config", None)
    if config_path:
        path = Path(config_path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {path} is not valid JSON: {exc}") from exc
        if isinstance(data, dict) and "config" in data and "model" not in data:
            data = data["config"]  # a run folder's config.json works too
        cfg = from_dict(type(cfg), data)
    given: dict[str, Any] = {}
    settings = declared(type(cfg))
    for d in settings:
        value = getattr(args, d.dest, None) if d.flag is not None else None
        if value is None or (d.meta.repeat and not value):
            continue
        if d.meta.repeat:  # added to what the config file holds
            value = tuple(dict.fromkeys([*_value_at(cfg, d.path), *value]))
        given[d.path] = value
    implied: dict[str, Any] = {}
    for d in settings:
        parent = d.path.rpartition(".")[0]
        if d.path in given:
            for sibling, value in d.meta.implies:
                implied.setdefault(f"{parent}.{sibling}" if parent else sibling, value)
        if d.meta.follows in given:
            implied.setdefault(d.path, given[d.meta.follows])
    given.update({path: value for path, value in implied.items() if path not in given})
    return with_settings(cfg, given)


def _value_at(cfg: Any, path: str) -> Any:
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def progress_line(run_id: str, s: dict[str, Any]) -> str:
    """One line of a run's progress: the epoch running now (1-based), its batch, and any other message once."""
    done, epochs = int(s.get("epoch") or 0), s.get("epochs", "?")
    message = str(s.get("message") or "")
    if s.get("state") == "running" and s.get("batches"):
        line = f"{run_id}: running epoch {min(done + 1, epochs) if isinstance(epochs, int) else done + 1}/{epochs}, batch {s.get('batch', 0)}/{s.get('batches')}"
        # "epoch k/n" and "epoch k/n done" messages repeat what the line says
        return line if not message or message.startswith("epoch ") else f"{line} ({message})"
    return f"{run_id}: {s.get('state')}, {done}/{epochs} epochs done" + (f" ({message})" if message else "")


def _progress_printer():
    last: dict[str, str] = {}

    def show(statuses: dict[str, dict[str, Any]]) -> None:
        for rid, s in statuses.items():
            line = progress_line(rid, s)
            if last.get(rid) != line:
                last[rid] = line
                _err(line)

    return show


def run_result(run_id: str, ws) -> dict[str, Any]:
    """The JSON a finished ``train --wait`` prints: id, final state, message, best and test metrics."""
    from segcore.runs import open_run

    run = open_run(run_id, ws)
    s = run.true_status()
    return {
        "run_id": run_id,
        "state": s.get("state"),
        "message": s.get("message", ""),
        "epochs_done": s.get("epoch", 0),
        "best": s.get("best", {}),
        "test": s.get("test", {}),
        "warnings": s.get("warnings", []),
        "path": str(run.path),
    }


# -- handlers ----------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from segcore.queue.launcher import launch, stop, wait_for
    from segcore.workspace import get_workspace

    ws = get_workspace()
    extra = None
    if getattr(args, "plan", False):
        from segcore.data.dataset import load_dataset
        from segcore.training.plan import changes, plan_dataset

        if not args.dataset:
            raise ValueError("--plan needs --dataset: the plan comes from the dataset's fingerprint")
        plan = plan_dataset(load_dataset(args.dataset, ws))
        cfg = settings_from_args(args, base=plan.config())
        record = plan.to_dict()
        record["changed"] = changes(record, cfg)  # what the flags changed from the plan
        extra = {"plan": record}
    else:
        cfg = settings_from_args(args)
    if getattr(args, "seeds", None) or getattr(args, "folds", None):
        return _train_group(args, cfg, ws)
    run_id = launch(cfg, ws, extra=extra)
    if not args.wait:
        if args.json:
            _print_json({"run_id": run_id, "state": "queued"})
        else:
            print(run_id)
        return 0
    _err(f"queued {run_id}; waiting (Ctrl-C stops the run)")
    try:
        wait_for([run_id], ws, on_progress=None if args.quiet else _progress_printer())
    except KeyboardInterrupt:
        _err(f"stopping {run_id} ...")
        stop(run_id, ws, wait=60)
    result = run_result(run_id, ws)
    if args.json:
        _print_json(result)
    else:
        print(f"{run_id} {result['state']}: {result['message']}")
        for key, value in result["test"].items():
            print(f"  test {key}: {value:.4f}")
    return 0 if result["state"] == "finished" else 1


def _train_group(args: argparse.Namespace, cfg, ws) -> int:
    """``train --seeds N`` / ``--folds K``: queue the group; with ``--wait``, its spread (and the folds' ensemble)."""
    from segcore.queue.launcher import wait_for
    from segcore.queue.repeats import evaluate_ensemble, group_summary, queue_folds, queue_seeds

    if args.seeds and args.folds:
        raise ValueError("--seeds and --folds are two kinds of group; give one")
    group = queue_seeds(cfg, ws, seeds=args.seeds) if args.seeds else queue_folds(cfg, ws, folds=args.folds)
    ids = [r["run_id"] for r in group["runs"]]
    if not args.wait:
        if args.json:
            _print_json({"group_id": group["group_id"], "run_ids": ids, "state": "queued"})
        else:
            print(group["group_id"])
            for run_id in ids:
                print(f"  {run_id}")
        return 0
    _err(f"queued {group['group_id']}: {len(ids)} runs; waiting")
    wait_for(ids, ws, on_progress=None if args.quiet else _progress_printer())
    out = group_summary(ws, group["group_id"])
    if group["kind"] == "folds" and group.get("test"):
        try:
            ensemble = evaluate_ensemble(ws, group["group_id"])
            out["ensemble"] = {k: (ensemble.get("all") or {}).get("dice") if k == "all_dice" else (ensemble.get("macro") or {}).get("dice")
                               for k in ("all_dice", "macro_dice")}
        except ValueError as exc:
            out["ensemble_error"] = str(exc)
    if args.json:
        _print_json(out)
    else:
        _print_group(out)
    return 0 if all(state == "finished" for state in out["runs"].values()) else 1


def _print_group(out: dict[str, Any]) -> None:
    print(f"{out['group_id']} ({out['kind']}): " + ", ".join(f"{r} {s}" for r, s in out["runs"].items()))
    for key, s in out["metrics"].items():
        if s["n"]:
            print(f"  test {key}: mean {s['mean']:.4f} sd {s['std']:.4f} (min {s['min']:.4f}, max {s['max']:.4f}, {s['n']} runs)")
    for key, value in (out.get("ensemble") or {}).items():
        if value is not None:
            print(f"  ensemble {key}: {value:.4f}")


def cmd_group(args: argparse.Namespace) -> int:
    from segcore.queue.repeats import evaluate_ensemble, group_summary
    from segcore.workspace import get_workspace

    ws = get_workspace()
    out = group_summary(ws, args.group)
    if args.ensemble:
        record = evaluate_ensemble(ws, args.group)
        out["ensemble"] = {"all_dice": (record.get("all") or {}).get("dice"), "macro_dice": (record.get("macro") or {}).get("dice")}
    if args.json:
        _print_json(out)
    else:
        _print_group(out)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from segcore.data.dataset import load_dataset
    from segcore.training.plan import plan_dataset

    plan = plan_dataset(load_dataset(args.dataset))
    if args.json:
        _print_json(plan.to_dict())
        return 0
    fp = plan.fingerprint
    name, thin = fp.thinnest
    print(f"dataset {fp.name}: {fp.num_images} images, median {fp.median_height}x{fp.median_width}, {fp.mode}, "
          f"{fp.num_classes} classes" + (f"; thinnest structures '{name}' {thin:.1f} px" if thin is not None else ""))
    for line in plan.lines():
        print("  " + line)
    print(f"train with it: python -m segcore train --plan --dataset {fp.name} [flags to change a setting]")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from segcore.runs import list_runs

    rows = list_runs()
    if args.state:
        rows = [r for r in rows if r.state == args.state]
    if args.dataset:
        rows = [r for r in rows if r.dataset == args.dataset]
    if args.tag:
        rows = [r for r in rows if args.tag in r.tags]
    if args.json:
        _print_json([r.to_dict() for r in rows])
        return 0
    if not rows:
        print("no runs")
        return 0
    print(f"{'run id':44} {'state':11} {'epoch':>7} {'val dice':>8} {'test dice':>9}  name")
    for r in rows:
        vd = f"{r.best_val_dice:.4f}" if r.best_val_dice is not None else "-"
        td = r.test.get("macro_dice")
        td = f"{td:.4f}" if isinstance(td, (int, float)) else "-"
        print(f"{r.run_id:44} {r.state:11} {r.epoch:>3}/{r.epochs:<3} {vd:>8} {td:>9}  {r.name}")
        for name, reason in r.damage.items():
            print(f"    {name} is damaged: {reason}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from segcore.queue.launcher import stop

    status = stop(args.run, wait=args.wait)
    if args.json:
        _print_json({"run_id": args.run, "state": status.get("state"), "message": status.get("message", "")})
    else:
        state = status.get("state")
        print(f"{args.run}: {state}" + (" (stop requested; it stops after the current batch)" if state == "running" else ""))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from segcore.queue.launcher import resume, wait_for
    from segcore.workspace import get_workspace

    ws = get_workspace()
    run_id = resume(args.run, ws)
    if args.wait:
        wait_for([run_id], ws, on_progress=_progress_printer())
        result = run_result(run_id, ws)
    else:
        result = {"run_id": run_id, "state": "queued"}
    if args.json:
        _print_json(result)
    else:
        print(f"{run_id}: {result['state']}")
    return 0 if result["state"] in ("queued", "finished") else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from segcore.queue.launcher import wait_for
    from segcore.queue.sweep import queue_sweep, write_table
    from segcore.workspace import get_workspace

    ws = get_workspace()
    if args.table:
        result = write_table(args.table, ws)
        _print_json(result) if args.json else print(result["markdown"])
        return 0
    if not args.dataset and not args.config:
        raise ValueError("sweep needs --dataset NAME (or a config file)")
    # --weights is the study's pretrained weights, applied per encoder by queue_sweep, not the U-Net's.
    base = settings_from_args(argparse.Namespace(**{**vars(args), "weights": None}), RunConfig())
    models = tuple(args.models.split(",")) if args.models else None
    sweep = queue_sweep(base, ws, weights=args.weights or "imagenet", fine_tune_after=args.fine_tune_after, models=models)
    for note in sweep["notes"]:
        _err(f"note: {note}")
    _err(f"queued {len(sweep['runs'])} runs as {sweep['sweep_id']}: " + ", ".join(r["label"] for r in sweep["runs"]))
    if not args.wait:
        out = {"sweep_id": sweep["sweep_id"], "runs": sweep["runs"], "notes": sweep["notes"]}
        _print_json(out) if args.json else print(sweep["sweep_id"])
        return 0
    wait_for([r["run_id"] for r in sweep["runs"]], ws, on_progress=_progress_printer())
    result = write_table(sweep["sweep_id"], ws)
    if args.json:
        _print_json(result)
    else:
        print(Path(result["markdown"]).read_text())
    return 0 if all(r["state"] == "finished" for r in result["rows"]) else 1


def register(subparsers) -> None:
    """Add the run commands to the ``python -m segcore`` parser."""
    p = subparsers.add_parser("train", help="queue a training run (or train and wait with --wait)",
                              description="Queue a training run from a config file and/or flags.")
    p.add_argument("config", nargs="?", help="a RunConfig JSON file (flags override it)")
    _add_settings(p)
    p.add_argument("--plan", action="store_true",
                   help="start from the dataset's plan (python -m segcore plan DATASET); flags override it, and the run "
                        "records the plan and what was changed")
    p.add_argument("--seeds", type=int, metavar="N", help="N runs of these settings on one split, training seeds seed..seed+N-1 "
                   "(the spread a difference must beat)")
    p.add_argument("--folds", type=int, metavar="K", help="K runs, each validating on one of K folds of the training images "
                   "(the test images stay); --wait also scores their ensemble")
    p.add_argument("--wait", action="store_true", help="wait until the run ends and print its result")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr while waiting")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_waking(cmd_train))

    p = subparsers.add_parser("group", help="a group of runs (train --seeds / --folds): the spread of each test figure",
                              description="The mean and spread of each test figure over a group's finished runs; "
                                          "--ensemble also scores the average of their predictions on the test split.")
    p.add_argument("group")
    p.add_argument("--ensemble", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_group)

    p = subparsers.add_parser("plan", help="the training plan derived from a dataset, with the reason for each setting",
                              description="Print the settings segcore derives from a dataset's fingerprint (sizes, "
                                          "class shares, the thinnest structures), each with its reason. "
                                          "'train --plan --dataset NAME' trains with them.")
    p.add_argument("dataset")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = subparsers.add_parser("runs", help="list runs with their true state and metrics")
    p.add_argument("--state", choices=LISTED_STATES)
    p.add_argument("--dataset")
    p.add_argument("--tag")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_waking(cmd_runs))

    p = subparsers.add_parser("stop", help="stop a queued or running run")
    p.add_argument("run")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for it to stop (SIGTERM after 30 s)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_waking(cmd_stop))

    p = subparsers.add_parser("resume", help="resume a stopped, interrupted or failed run from its last checkpoint")
    p.add_argument("run")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_waking(cmd_resume))

    p = subparsers.add_parser("sweep", help="queue the encoder study (U-Net, VGG16 frozen/fine-tuned, DenseNet121, ResNet50, MobileNetV2)")
    p.add_argument("config", nargs="?", help="a RunConfig JSON file with the shared settings")
    _add_settings(p, sweep=True)
    p.add_argument("--fine-tune-after", type=int, metavar="N", help="frozen epochs of 'VGG16 fine-tuned' (default half)")
    p.add_argument("--models", help="comma-separated subset of: " + ", ".join(label for label, _, _ in PAPER_SET))
    p.add_argument("--table", metavar="SWEEP_ID", help="only (re)write the results table of a sweep")
    p.add_argument("--wait", action="store_true", help="wait for every run and write the results table")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_waking(cmd_sweep))
