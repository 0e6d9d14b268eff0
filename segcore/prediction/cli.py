"""The ``predict`` command: a run's model on one image file, the mask written as PNG.

``--json`` prints exactly one JSON object on stdout; notes go to stderr.
"""

from __future__ import annotations

import argparse

from segcore.cliutil import print_json, waking


def cmd_predict(args: argparse.Namespace) -> int:
    from segcore.prediction import Predictor, probs_to_mask, read_image, save_mask_png
    from segcore.runs import open_run

    run = open_run(args.run)
    run.checked_model_path()  # a checkpoint cut short is named as damaged, not "File not found"
    predictor = Predictor.from_folder(run)
    image = read_image(args.image)
    probs = predictor.predict_probs(image)
    mask = probs_to_mask(probs, predictor.mode, args.threshold)
    written = save_mask_png(mask, args.out, predictor.mode)
    if args.probs:
        import numpy as np

        np.save(args.probs, probs.astype(np.float32))
    result = {
        "run_id": predictor.run_id,
        "image": str(args.image),
        "mask": [str(p) for p in written],
        "size": list(mask.shape[:2]),
        "mode": predictor.mode,
        "classes": predictor.class_names,
        "class_pixels": _class_pixels(mask, predictor.mode, predictor.class_names),
    }
    if args.json:
        print_json(result)
    else:
        print(", ".join(result["mask"]))
    return 0


def _class_pixels(mask, mode: str, names: list[str]) -> dict[str, int]:
    import numpy as np

    if mode == "multilabel":
        return {names[k + 1] if k + 1 < len(names) else str(k + 1): int(mask[..., k].sum()) for k in range(mask.shape[-1])}
    counts = np.bincount(mask.ravel(), minlength=max(len(names), 1))
    return {(names[k] if k < len(names) else str(k)): int(c) for k, c in enumerate(counts)}


def register(subparsers) -> None:
    """Add the ``predict`` command to the ``python -m segcore`` parser."""
    p = subparsers.add_parser("predict", help="predict a mask for an image with a run's model")
    p.add_argument("run")
    p.add_argument("image")
    p.add_argument("--out", required=True, help="mask PNG to write (class ids; multilabel: one PNG per class)")
    p.add_argument("--probs", help="also save the probabilities as a .npy file")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=waking(cmd_predict))
