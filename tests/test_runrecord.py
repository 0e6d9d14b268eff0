"""A run's record: config.json read as typed fields, migrated in one place, one answer to each question."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from segcore.config import ModelConfig, RunConfig, TrainConfig
from segcore.runfiles import RunFileError
from segcore.runrecord import RECORD_VERSION, DatasetRecord, InputRecord, RunRecord
from segcore.runs import create_run

CFG = RunConfig(model=ModelConfig(depth=3, filters=8), train=TrainConfig(dataset="demo", image_size=64, fit="short_side"))
DATASET = {"name": "demo", "content_hash": "abc", "mode": "multiclass", "classes": ["Sky", "Road", "Car"],
           "channels": 3, "num_samples": 6, "class0": "class", "ignore_index": 11}
SPLIT = {"train": ["a", "b", "c"], "val": ["d"], "test": ["e", "f"]}


def make(ws, **extra):
    return create_run(ws, CFG, dataset=DATASET, split=SPLIT, extra=extra or None,
                      now=datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_a_new_run_reads_back_as_fields(workspace):
    run = make(workspace, rerun_of="20251231-000000-x", group={"id": "g1", "kind": "seeds"})
    record = run.read_record()
    assert isinstance(record, RunRecord) and record.version == RECORD_VERSION
    assert json.loads(run.config_path.read_text())["version"] == RECORD_VERSION  # written with its version
    assert record.run_id == run.run_id and record.config == CFG and record.created_at == "2026-01-01T00:00:00Z"
    assert record.split == {"train": ("a", "b", "c"), "val": ("d",), "test": ("e", "f")} and record.test_ids == ["e", "f"]
    assert record.dataset == DatasetRecord("demo", "abc", "multiclass", ("Sky", "Road", "Car"), 3, 6, "class", 11)
    assert record.dataset.labels.include_background and record.dataset.labels.ignore_index == 11
    assert record.rerun_of == "20251231-000000-x" and record.group == {"id": "g1", "kind": "seeds"}
    assert record.dataset_name == "demo" and record.input is None and record.content == {}
    assert run.read_config() == record.config


def test_fit_and_size_have_one_source(workspace):
    """Before the trainer has loaded the data, the settings answer; after, what the trainer applied."""
    run = make(workspace)
    record = run.read_record()
    assert (record.fit, record.image_size) == ("short_side", 64)  # not a "squash" default
    run.update_meta(input={"fit": "native", "image_size": 128, "reference_short_side": 360.0})
    record = run.read_record()
    assert record.input == InputRecord("native", 128, 360.0)
    assert (record.fit, record.image_size) == ("native", 128)


def test_a_record_from_before_versions_reads_the_same(workspace):
    run = make(workspace)
    data = json.loads(run.config_path.read_text())
    del data["version"]
    run.config_path.write_text(json.dumps(data))
    old = run.read_record()
    assert old.version == RECORD_VERSION and old.config == CFG and old.split["test"] == ("e", "f")
    assert "version" not in json.loads(run.config_path.read_text())  # reading never rewrites the folder


@pytest.mark.parametrize("version", [RECORD_VERSION + 1, 0, "2", True])
def test_a_version_this_segcore_cannot_read_is_named(workspace, version):
    run = make(workspace)
    data = json.loads(run.config_path.read_text())
    data["version"] = version
    run.config_path.write_text(json.dumps(data))
    with pytest.raises(RunFileError, match=r"config\.json.*version"):
        run.read_record()
    assert run.summary().state == "damaged" and "config.json" in run.summary().damage


def test_a_damaged_field_of_the_record_is_named(workspace):
    run = make(workspace)
    data = json.loads(run.config_path.read_text())
    data["input"] = [128]
    run.config_path.write_text(json.dumps(data))
    with pytest.raises(RunFileError, match=r"config\.json.*'input'"):
        run.read_record()


def test_a_run_that_recorded_no_input_predicts_as_its_settings_say(workspace):
    """A run stopped before its data loaded (or from before ``input`` was recorded) is not squashed:
    its images meet the model as its settings asked."""
    from segcore.models import build_model
    from segcore.prediction import Predictor

    run = make(workspace)
    model = build_model(CFG.model, image_size=64, channels=3, mode="multiclass", num_classes=3)
    run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    model.save(run.best_model_path)
    predictor = Predictor.from_folder(run)
    assert predictor.fit == "short_side" and predictor.image_size == 64
    assert predictor.labels.include_background and predictor.class_names == ["Sky", "Road", "Car"]
