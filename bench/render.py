"""Render benchmark: warm server-side render time of the Compare and Predict pages.

- Compare: 4 finished runs x 8 test images on the demo dataset (128 px), each run
  with its test prediction cache and a real evaluation report. Warm = the
  probabilities are cached and the page re-renders every tile after the
  heatmap class changes (the common interaction).
- Predict: a U-Net of depth 4, 32 filters, 128 px (the former default) on an uploaded 512x512
  RGB image. Warm = the model is loaded; each timed render is a *new* image, so
  it includes decoding, prediction, resizing the probabilities back to 512x512,
  the overlay, the heatmap and the mask PNG.

Times are the page script's run time measured with ``streamlit.testing``
(what the server spends before the browser can draw), median of ``--repeats``.
Goals: Compare < 3 s, Predict < 1 s. The last line printed is one JSON object.

Usage::

    .venv/bin/python bench/render.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))


def build_workspace(root: Path) -> dict:
    """The demo dataset, 4 evaluated runs with prediction caches, and one run with a real model."""
    os.environ["SEGCORE_WORKSPACE"] = str(root)
    from segcore import runs
    from segcore.config import ModelConfig, RunConfig, TrainConfig
    from segcore.data.demo import ensure_demo
    from segcore.data.dataset import load_dataset
    from segcore.evaluation import evaluate_predictions
    from segcore.workspace import get_workspace

    ws = get_workspace(root)
    info = ensure_demo(ws)
    ds = load_dataset(info.name, ws)
    size = ds.image(ds.ids[0]).shape[0]
    test = ds.ids[:8]
    names = info.class_names
    record = {"name": info.name, "content_hash": info.content_hash, "mode": info.mode, "classes": names, "channels": info.channels}
    rng = np.random.default_rng(0)
    run_ids = []
    for i, quality in enumerate((0.9, 0.8, 0.7, 0.6)):
        cfg = RunConfig(model=ModelConfig(depth=3 + i % 2, filters=16), train=TrainConfig(dataset=info.name, image_size=size, epochs=5), name=f"bench-{i}")
        run = runs.create_run(ws, cfg, dataset=record, split={"train": ds.ids[8:], "val": [], "test": test})
        masks = [ds.mask(sid) for sid in test]
        probs = []
        for m in masks:
            noise = rng.random((size, size, len(names))).astype(np.float32)
            p = quality * np.eye(len(names), dtype=np.float32)[m] + (1 - quality) * noise
            probs.append(p / p.sum(axis=-1, keepdims=True))
        probs = np.stack(probs)
        run.write_prediction_cache(test, probs, info.mode, names, size)
        run.write_evaluation(evaluate_predictions(masks, list(probs), info.mode, names, ids=test).to_dict())
        run.update_status(state="finished", epoch=5, epochs=5)
        run_ids.append(run.run_id)
        time.sleep(1.01)  # distinct creation times keep the run order stable

    from segcore.models import build_model

    cfg = RunConfig(model=ModelConfig(filters=32), train=TrainConfig(dataset=info.name, image_size=128, epochs=1), name="bench-predict")
    run = runs.create_run(ws, cfg, dataset=record, split={"train": ds.ids, "val": [], "test": []})
    model = build_model(cfg.model, image_size=128, channels=info.channels, mode=info.mode, num_classes=len(names))
    run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    model.save(run.best_model_path)
    run.update_status(state="finished", epoch=1, epochs=1)
    return {"compare_runs": run_ids, "predict_run": run.run_id, "test_ids": test}


def timed(at) -> float:
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"the page raised: {at.exception[0].value}")
    return elapsed


def bench_compare(made: dict, repeats: int) -> dict:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/compare.py")
    at.session_state["cmp_runs"] = made["compare_runs"]
    cold = timed(at)
    at.multiselect(key="cmp_ids").set_value(made["test_ids"])
    first = timed(at)
    tiles = len(at.get("image"))
    warm = []
    for i in range(repeats):
        at.selectbox(key="cmp_class").set_value(1 + i % 3)
        warm.append(timed(at))
    return {"compare_cold_s": cold, "compare_first_8_images_s": first, "compare_warm_s": statistics.median(warm), "compare_tiles": tiles}


def bench_predict(made: dict, repeats: int) -> dict:
    from streamlit.testing.v1 import AppTest

    rng = np.random.default_rng(1)

    def upload(at, i):
        img = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
        cv2.circle(img, (256, 256), 100 + i, (255, 40, 40), -1)
        ok, png = cv2.imencode(".png", img)
        at.file_uploader(key="pred_upload").set_value((f"image{i}.png", png.tobytes(), "image/png"))

    at = AppTest.from_file(str(PROJECT / "streamlit_app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/predict.py")
    at.session_state["pred_run"] = made["predict_run"]
    timed(at)
    upload(at, 0)
    cold = timed(at)  # loads Keras and the model
    warm = []
    for i in range(1, repeats + 1):
        upload(at, i)
        warm.append(timed(at))
    same = []
    for i in range(repeats):
        at.slider(key="pred_opacity").set_value(0.3 + 0.1 * (i % 5))
        same.append(timed(at))
    return {"predict_cold_s": cold, "predict_warm_s": statistics.median(warm), "predict_warm_same_image_s": statistics.median(same)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="segcore-render-") as tmp:
        t = time.perf_counter()
        made = build_workspace(Path(tmp) / "ws")
        print(f"workspace ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        result = {}
        result.update(bench_compare(made, args.repeats))
        result.update(bench_predict(made, args.repeats))
    result = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    result.update({"compare_goal_s": 3.0, "predict_goal_s": 1.0, "cpus": os.cpu_count()})
    for key, value in result.items():
        print(f"{key}: {value}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
