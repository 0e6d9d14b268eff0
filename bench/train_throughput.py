"""Training throughput: images/s and achieved TFLOP/s, per model, on this device.

Models: the plain U-Net (depth 4, base 64 filters) and a U-Net on each
encoder (VGG16, ResNet50, DenseNet121, MobileNetV2), all at 256x256 RGB with a
4-class softmax head, trained with Adam and the Dice + cross-entropy loss on
synthetic batches held on the device (so the input pipeline is not measured).
On a GPU the Keras models train with mixed precision and compiled steps,
exactly as a segcore run does, and the same U-Net written directly in PyTorch
(AMP bf16, channels-last, ``torch.compile``) is timed in the same process for
a ratio.

Achieved TFLOP/s = images/s x 3 x forward FLOPs per image (a training step
costs about three forward passes) / 1e12, with forward FLOPs from
``segcore.models.forward_gflops``.

Usage:
    python bench/train_throughput.py [--steps 20] [--batch-size 8] [--image-size 256] [--models unet,vgg16]

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

MODELS = ("unet", "vgg16", "resnet50", "densenet121", "mobilenetv2")
NUM_CLASSES = 4


def model_config(name: str):
    from segcore.config import ModelConfig

    if name == "unet":
        return ModelConfig(encoder="none", depth=4, filters=64)
    return ModelConfig(encoder=name, filters=32, weights="none")


def time_keras(name: str, image_size: int, batch_size: int, steps: int, warmup: int, on_gpu: bool) -> dict:
    import keras

    from segcore import losses, metrics
    from segcore.models import build_model, count_params, forward_gflops
    from segcore.training.pipeline import make_targets

    keras.mixed_precision.set_global_policy("mixed_float16" if on_gpu else "float32")
    cfg = model_config(name)
    model = build_model(cfg, image_size=image_size, channels=3, mode="multiclass", num_classes=NUM_CLASSES)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.get("auto", mode="multiclass"),
                  metrics=metrics.segmentation_metrics("multiclass", NUM_CLASSES, per_class=False), jit_compile=on_gpu)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype(np.float32)
    masks = rng.integers(0, NUM_CLASSES, (batch_size, image_size, image_size)).astype(np.uint8)
    y = make_targets(masks, "multiclass", NUM_CLASSES)
    x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    t0 = time.perf_counter()
    for _ in range(warmup):
        loss = model.train_on_batch(x, y, return_dict=True)["loss"]
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        out = model.train_on_batch(x, y, return_dict=True)
    float(out["loss"])  # wait for the device
    seconds = time.perf_counter() - t0
    gflops = forward_gflops(model)
    ips = steps * batch_size / seconds
    keras.mixed_precision.set_global_policy("float32")
    return {
        "model": name,
        "params": count_params(model),
        "forward_gflops_per_image": round(gflops, 3),
        "images_per_s": round(ips, 3),
        "achieved_tflops": round(ips * 3 * gflops / 1e3, 4),
        "step_ms": round(1e3 * seconds / steps, 2),
        "warmup_s": round(compile_s, 2),
        "first_loss_finite": bool(np.isfinite(float(loss))),
    }


def time_torch_unet(image_size: int, batch_size: int, steps: int, warmup: int) -> dict:
    """The same U-Net (depth 4, base 64, BN, ReLU, transposed conv) in plain PyTorch, AMP bf16 + torch.compile."""
    import torch
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        def __init__(self, depth=4, base=64, classes=NUM_CLASSES):
            super().__init__()
            self.enc = nn.ModuleList()
            cin = 3
            for level in range(depth):
                self.enc.append(block(cin, base * 2**level))
                cin = base * 2**level
            self.mid = block(cin, base * 2**depth)
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            cin = base * 2**depth
            for level in reversed(range(depth)):
                cout = base * 2**level
                self.up.append(nn.ConvTranspose2d(cin, cout, 2, stride=2))
                self.dec.append(block(2 * cout, cout))
                cin = cout
            self.head = nn.Conv2d(cin, classes, 1)

        def forward(self, x):
            x = x / 255.0
            skips = []
            for enc in self.enc:
                x = enc(x)
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
            x = self.mid(x)
            for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
                x = dec(torch.cat([up(x), skip], 1))
            return self.head(x)

    dev = torch.device("cuda")
    model = UNet().to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    step_model = torch.compile(model)
    x = (torch.rand(batch_size, 3, image_size, image_size, device=dev) * 255).to(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (batch_size, image_size, image_size), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = step_model(x)
            probs = logits.float().softmax(1)
            onehot = nn.functional.one_hot(y, NUM_CLASSES).permute(0, 3, 1, 2).float()
            inter = (probs * onehot).sum((0, 2, 3))
            dice = 1 - ((2 * inter + 1) / (probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)).mean()
            loss = dice + nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    ips = steps * batch_size / seconds
    return {"model": "torch_unet", "images_per_s": round(ips, 3), "step_ms": round(1e3 * seconds / steps, 2),
            "warmup_s": round(warm, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=None, help="timed steps per model (default 30 on GPU, 3 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 on GPU, 1 on CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="default 16 on GPU, 2 on CPU")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--models", default=",".join(MODELS))
    args = p.parse_args(argv)

    import keras

    from segcore.training.device import describe_device, package_versions

    dev = describe_device()
    on_gpu = dev["device"] == "gpu"
    steps = args.steps or (30 if on_gpu else 3)
    warmup = args.warmup or (5 if on_gpu else 1)
    batch = args.batch_size or (16 if on_gpu else 2)
    results = []
    for name in args.models.split(","):
        r = time_keras(name.strip(), args.image_size, batch, steps, warmup, on_gpu)
        print(json.dumps(r), file=sys.stderr, flush=True)
        results.append(r)
        keras.backend.clear_session()
    summary = {
        "bench": "train_throughput",
        "backend": dev["backend"],
        "device": dev["gpus"][0] if on_gpu else f"cpu ({dev['cpu_count']} cores)",
        "image_size": args.image_size,
        "batch_size": batch,
        "steps": steps,
        "precision": "mixed_float16 + jit_compile" if on_gpu else "float32",
        "models": results,
        "versions": package_versions(),
    }
    if on_gpu:
        import torch

        if torch.cuda.is_available():
            t = time_torch_unet(args.image_size, batch, steps, warmup)
            summary["torch_unet"] = t
            unet = next((r for r in results if r["model"] == "unet"), None)
            if unet:
                summary["keras_over_torch"] = round(unet["images_per_s"] / t["images_per_s"], 3)
    else:
        summary["note"] = "CPU only: few steps, small batch; the PyTorch comparison runs on a GPU only"
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
