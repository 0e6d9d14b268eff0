"""CLI settings: a config file and flags make the same RunConfig; errors name the input."""

from __future__ import annotations

import argparse
import json

import pytest

from segcore.config import ModelConfig, RunConfig, TrainConfig
from segcore.training.cli import register, settings_from_args


def parse(*argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register(sub)
    return parser.parse_args(list(argv))


def test_flags_build_the_contract_config():
    args = parse("train", "--dataset", "demo", "--encoder", "none", "--depth", "3", "--filters", "16",
                 "--image-size", "64", "--epochs", "2", "--batch-size", "8", "--seed", "0", "--wait", "--json")
    cfg = settings_from_args(args)
    assert cfg.model == ModelConfig(encoder="none", depth=3, filters=16)
    assert (cfg.train.dataset, cfg.train.image_size, cfg.train.epochs, cfg.train.batch_size, cfg.train.seed) == ("demo", 64, 2, 8, 0)
    assert args.wait and args.json


def test_config_file_gives_the_same_settings_and_flags_override(tmp_path):
    cfg = RunConfig(model=ModelConfig(encoder="resnet50", weights="imagenet", freeze="frozen"),
                    train=TrainConfig(dataset="cells", image_size=96, epochs=7), name="r50")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert settings_from_args(parse("train", str(path))) == cfg
    over = settings_from_args(parse("train", str(path), "--epochs", "3", "--fine-tune-after", "2", "--train-ids", "1-27"))
    assert over.train.epochs == 3 and over.model.freeze == "fine_tune" and over.model.fine_tune_after == 2
    assert over.train.split.method == "ids" and over.train.split.train_ids == ("1-27",)
    # a run folder's config.json works as a config file too
    folder_style = tmp_path / "config.json"
    folder_style.write_text(json.dumps({"run_id": "x", "config": cfg.to_dict()}))
    assert settings_from_args(parse("train", str(folder_style))) == cfg


def test_bad_config_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file .*missing.json does not exist"):
        settings_from_args(parse("train", str(tmp_path / "missing.json")))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        settings_from_args(parse("train", str(bad)))
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"train": {"epoch": 3}}))
    with pytest.raises(ValueError, match=r"unknown TrainConfig setting\(s\) \['epoch'\]"):
        settings_from_args(parse("train", str(typo)))
