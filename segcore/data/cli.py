"""Data commands: ``demo``, ``import`` and ``datasets``.

With ``--json`` these print exactly one JSON object (``datasets``: one object
per line) on stdout; progress and notes go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from segcore.fsutil import describe_os_error, read_json


def register(subparsers) -> None:
    """Add the data subcommands to the ``python -m segcore`` parser."""
    p = subparsers.add_parser("demo", help="create the built-in demo dataset (once)")
    p.add_argument("--quiet", action="store_true", help="print nothing when the demo already exists")
    p.add_argument("--force", action="store_true", help="regenerate it even if it exists")
    p.add_argument("--json", action="store_true", help="print the dataset summary as JSON")
    p.set_defaults(func=_demo)

    from segcore.data.imports import LAYOUTS

    p = subparsers.add_parser(
        "import",
        help="import a dataset (folder, .zip or COCO .json) into the workspace",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Layouts:\n" + "\n".join(f"  {k:14s} {v}" for k, v in LAYOUTS.items()),
    )
    p.add_argument("path", help="folder, .zip archive or COCO .json file")
    p.add_argument("--name", required=True, help="dataset name (letters, digits, '.', '_', '-')")
    p.add_argument("--layout", default="auto", help=f"one of {sorted(LAYOUTS)} (default: detect)")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="class names, background first")
    p.add_argument("--classes-file", help="text file (on this machine) with one class name per line, background first")
    p.add_argument("--colors-file", help="JSON colour table {name: [r, g, b]} (on this machine) for colour-coded masks")
    p.add_argument("--ignore", type=int, action="append", metavar="V", help="mask value that is void (repeatable)")
    p.add_argument("--merge", action="append", metavar="A=B", help="class folder A becomes class B (repeatable)")
    p.add_argument("--mask-encoding", choices=["auto", "binary", "index", "trimap", "color"], default=None)
    p.add_argument("--multilabel", choices=["auto", "yes", "no"], default="auto", help="for per-class folders")
    p.add_argument(
        "--class0", choices=["auto", "background", "class"], default="auto",
        help="what class 0 is: the background (left out of every mean) or a real class such as Sky "
        "(counted in every mean); auto: background when so named or binary, and the report says which was taken",
    )
    p.add_argument("--annotator", help="whose masks to use when file or folder names carry annotators (_1stHO, 2nd_manual, ...)")
    p.add_argument(
        "--folder-role", action="append", metavar="FOLDER=ROLE",
        help="for per-class folders: the role of a mask folder, one of class, fov, annotator, ignore (repeatable)",
    )
    p.add_argument(
        "--option", action="append", metavar="KEY=JSON",
        help="any other import option (repeatable); unknown keys are refused with the list of valid ones",
    )
    p.add_argument("--strict", action="store_true", help="fail if any file had to be skipped")
    p.add_argument("--version", dest="new_version", action="store_true", help="if NAME exists, import as NAME-2, ...")
    p.add_argument("--json", action="store_true", help="print the import report as one JSON object")
    p.set_defaults(func=_import)

    p = subparsers.add_parser("datasets", help="list the datasets in the workspace")
    p.add_argument("--json", action="store_true", help="one JSON object per dataset per line")
    p.set_defaults(func=_datasets)


def _demo(args) -> int:
    from segcore.data.demo import DEMO_NAME, ensure_demo, make_demo
    from segcore.workspace import get_workspace

    ws = get_workspace()
    existed = (ws.dataset_dir(DEMO_NAME) / "dataset.json").is_file()
    info = make_demo(ws, force=True) if args.force else ensure_demo(ws)
    summary = {
        "name": info.name,
        "created": args.force or not existed,
        "mode": info.mode,
        "classes": info.class_names,
        "num_samples": len(info.samples),
        "path": str(ws.dataset_dir(info.name)),
    }
    if args.json:
        print(json.dumps(summary))
    elif not (args.quiet and existed and not args.force):
        verb = "created" if summary["created"] else "already exists"
        print(f"demo dataset {verb}: {summary['num_samples']} samples, classes {summary['classes']} in {summary['path']}")
    return 0


def _pairs(items: list[str], flag: str, expected: str) -> dict[str, str]:
    """``["A=B", ...]`` from a repeatable flag as ``{A: B}``; an item without ``=`` is refused naming the flag."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{flag} expects {expected}, got {item!r}")
        a, b = item.split("=", 1)
        out[a] = b
    return out


def _options(args):
    """The import options of the command line, read strictly (an unknown key is an error)."""
    from segcore.data.imports import read_class_list
    from segcore.data.options import ImportOptions, parse_colors

    opts: dict = {}
    if args.classes:
        opts["classes"] = args.classes
    if args.classes_file:
        # The command line runs as the machine's own user: it may read any file it is given.
        opts["classes"] = read_class_list(Path(args.classes_file).read_text(encoding="utf-8"))
    if args.colors_file:
        opts["colors"] = [[n, list(c)] for n, c in parse_colors(read_json(Path(args.colors_file)), f"--colors-file {args.colors_file}")]
    if args.ignore:
        opts["ignore"] = args.ignore
    if args.merge:
        opts["merge"] = _pairs(args.merge, "--merge", "A=B (class folder A becomes class B)")
    if args.mask_encoding:
        opts["mask_encoding"] = args.mask_encoding
    if args.multilabel != "auto":
        opts["multilabel"] = args.multilabel == "yes"
    if args.class0 != "auto":
        opts["class0"] = args.class0
    if args.annotator:
        opts["annotator"] = args.annotator
    if args.folder_role:
        opts["folder_roles"] = _pairs(args.folder_role, "--folder-role", "FOLDER=ROLE")
    for item in args.option or []:
        if "=" not in item:
            raise ValueError(f"--option expects KEY=JSON, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            opts[key] = json.loads(raw)
        except json.JSONDecodeError:
            opts[key] = raw
    return ImportOptions.from_dict(opts)


def _import(args) -> int:
    from segcore.data.imports import import_dataset

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}" if total else message, file=sys.stderr)

    try:
        report = import_dataset(
            args.path,
            args.name,
            layout=args.layout,
            options=_options(args),
            strict=args.strict,
            progress=None if args.json else progress,
            on_exists="version" if args.new_version else "error",
        )
    except Exception as exc:
        if not args.json:
            if isinstance(exc, (ValueError, FileNotFoundError, FileExistsError)):
                raise
            if isinstance(exc, OSError):
                raise ValueError(describe_os_error(exc)) from None  # e.g. a read-only workspace: one line, no trace
            raise ValueError(f"import failed: {type(exc).__name__}: {exc}") from None
        # --json promises one object on stdout, also when the request itself was refused or broke.
        if isinstance(exc, OSError):
            message = describe_os_error(exc)
        elif isinstance(exc, ValueError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
        print(json.dumps({"ok": False, "name": args.name, "error": message, "problems": []}))
        return 1
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        if report.ok:
            info = report.dataset
            print(
                f"imported {len(info.samples)} samples as {report.name!r} "
                f"(layout {report.layout}, {info.mode}, classes {info.class_names}, {info.channels} channels, "
                f"class 0 {'is the background' if info.class0_is_background else 'is a real class'})"
            )
        for p in report.problems:
            print(f"{p.severity}: [{p.kind}] {p.message}", file=sys.stderr)
        if not report.ok:
            print(f"error: import failed: {report.error}", file=sys.stderr)
    return 0 if report.ok else 1


def _datasets(args) -> int:
    from segcore.data.dataset import list_datasets

    infos = list_datasets()
    for info in infos:
        row = {
            "name": info.name,
            "mode": info.mode,
            "classes": info.class_names,
            "num_samples": len(info.samples),
            "channels": info.channels,
            "problems": [p.to_dict() for p in info.problems],
        }
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{info.name:24s} {info.mode:11s} {len(info.samples):6d} samples  classes {info.class_names}  problems {len(info.problems)}")
    if not infos and not args.json:
        print("no datasets; create the demo with: python -m segcore demo", file=sys.stderr)
    return 0
