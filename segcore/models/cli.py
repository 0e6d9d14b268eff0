"""``python -m segcore models``: the model variants with their sizes and cost."""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list model variants with parameter counts and GFLOPs",
        description="Build each model variant (plain U-Net and each encoder, weights none, binary head, "
                    "3 input channels) and print parameters, encoder parameters and forward GFLOPs.",
    )
    p.add_argument("--image-size", type=int, default=256, help="input size in pixels (default 256)")
    p.add_argument("--json", action="store_true", help="print one JSON list on stdout")
    p.set_defaults(func=run)


def variants_table(image_size: int = 256) -> list[dict]:
    """One row per model variant: name, params, encoder_params, gflops at ``image_size``."""
    from segcore.config import ModelConfig
    from segcore.catalog import encoders
    from segcore.models import build_model, count_params, encoder_param_count, forward_gflops

    rows = []
    for name in encoders.names():
        model = build_model(ModelConfig(encoder=name), image_size=image_size, channels=3, mode="binary", num_classes=2)
        rows.append({
            "name": model.name.removesuffix("_unet"),  # "unet" for the plain U-Net
            "params": count_params(model),
            "encoder_params": encoder_param_count(model),
            "gflops": round(forward_gflops(model), 2),
        })
        del model
    return rows


def run(args) -> int:
    rows = variants_table(args.image_size)
    if args.json:
        print(json.dumps(rows))
        return 0
    from segcore.config import ModelConfig

    print(f"model variants at {args.image_size}x{args.image_size}x3 (binary head, filters {ModelConfig().filters}):",
          file=sys.stderr)
    print(f"{'name':<12} {'params':>12} {'encoder_params':>15} {'gflops':>8}")
    for r in rows:
        print(f"{r['name']:<12} {r['params']:>12,} {r['encoder_params']:>15,} {r['gflops']:>8.2f}")
    return 0
