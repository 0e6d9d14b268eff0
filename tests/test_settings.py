"""Settings are checked once, when the settings objects are built: the command line, config files, the
sweep and the Train page refuse the same bad values before anything is queued, naming the setting."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from _train_helpers import make_shapes_dataset

from segcore import config
from segcore.config import AugmentConfig, ModelConfig, RunConfig, SettingError, TrainConfig
from segcore.fsutil import check_name
from segcore.runs import list_runs

# (config-file data, the setting named, what the message says is expected)
BAD = [
    ({"train": {"image_size": 100000}}, "train.image_size", "a whole number from 16 to 8192"),
    ({"train": {"learning_rate": float("inf")}}, "train.learning_rate", "a finite number > 0"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate", "a finite number > 0"),
    ({"train": {"loss": "diec"}}, "train.loss", "one of 'auto', 'dice'"),
    ({"model": {"filters": 0}}, "model.filters", "a whole number from 1 to 1024"),
    ({"model": {"dropout": 5}}, "model.dropout", "a finite number in [0, 1)"),
    ({"model": {"depth": 9}}, "model.depth", "a whole number from 3 to 5"),
    ({"model": {"weights": "/no/such/encoder.h5"}}, "model.weights", "/no/such/encoder.h5 does not exist"),
    ({"train": {"early_stopping_patience": -3}}, "train.early_stopping_patience", "a whole number from 0"),
    ({"train": {"class_weighting": "yes"}}, "train.class_weighting", "true or false"),
    ({"train": {"augment": {"enabled": "no"}}}, "train.augment.enabled", "true or false"),
    ({"train": {"seed": -1}}, "train.seed", "a whole number from 0 to 4294967295"),
    ({"train": {"epochs": 2.5}}, "train.epochs", "a whole number from 1"),
    ({"train": {"batch_size": True}}, "train.batch_size", "a whole number from 1"),
    ({"train": {"optimizer": "adamx"}}, "train.optimizer", "one of 'adam'"),
    ({"train": {"backend": "theano"}}, "train.backend", "one of 'auto', 'tensorflow', 'torch', 'jax'"),
    ({"train": {"dataset": "../etc"}}, "train.dataset", "1 to 64 letters"),
    ({"train": {"split": {"val_fraction": 0.6, "test_fraction": 0.5}}}, "train.split.val_fraction", "leaves no training data"),
    ({"train": {"loss": "weighted_cce"}}, "train.class_weighting", "with train.loss 'weighted_cce'"),
    ({"model": {"depth": 3}, "train": {"image_size": 60}}, "train.image_size", "a multiple of 2^depth = 8"),
    ({"model": {"encoder": "resnet50"}, "train": {"image_size": 48}}, "train.image_size", "to fit encoder 'resnet50'"),
    ({"model": {"encoder": "vgg16", "freeze": "fine_tune", "fine_tune_after": 5}, "train": {"epochs": 3}},
     "model.fine_tune_after", "from 1 to train.epochs - 1 (2)"),
    ({"train": {"image_size": 4096, "batch_size": 64}}, "train.image_size", "GiB"),
]


@pytest.mark.parametrize("data, setting, expected", BAD, ids=[b[1] for b in BAD])
def test_config_file_values_are_refused_naming_the_setting(data, setting, expected):
    with pytest.raises(SettingError) as info:
        RunConfig.from_dict(data)
    assert info.value.setting == setting
    assert str(info.value).startswith(f"setting {setting} is ")
    assert expected in str(info.value)


def test_strings_are_not_booleans_and_nothing_is_stored_as_given():
    with pytest.raises(SettingError, match="setting train.augment.enabled is 'no'; expected true or false"):
        AugmentConfig(enabled="no")
    with pytest.raises(SettingError, match="train.class_weighting is 1"):
        TrainConfig(class_weighting=1)
    # whole numbers and reals are stored as their types, so a saved config reads back equal
    cfg = RunConfig(train=TrainConfig(learning_rate=1, image_size=64))
    assert isinstance(cfg.train.learning_rate, float)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_replace_is_checked_too():
    cfg = RunConfig()
    with pytest.raises(SettingError, match="setting train.seed is -1"):
        replace(cfg, train=replace(cfg.train, seed=-1))


def test_machine_checks_are_skipped_for_stored_settings_and_repeated_at_launch(workspace):
    data = {"model": {"weights": "/no/such/encoder.h5"}}
    stored = RunConfig.from_dict(data, stored=True)  # a run folder made on another machine still reads
    assert stored.model.weights == "/no/such/encoder.h5"
    with pytest.raises(SettingError, match="model.weights .* does not exist"):
        config.check_machine(stored)
    from segcore.queue import launch

    with pytest.raises(SettingError, match="model.weights"):
        launch(stored, workspace, start_worker=False)
    assert list_runs(workspace) == []


def test_memory_estimate_is_a_lower_bound_that_refuses_absurd_sizes():
    small = RunConfig(train=TrainConfig(image_size=256, batch_size=8))
    assert 0 < config.activation_bytes(small) < 2 * 1024**3
    with config.stored_settings():  # built without the check, to measure it
        huge = replace(small, train=replace(small.train, image_size=8192, batch_size=64))
    assert config.activation_bytes(huge) > 1024**4
    with pytest.raises(SettingError, match=r"setting train.image_size is 8192; .* needs at least [0-9.]+ GiB .* more than this machine's"):
        config.check_machine(huge)


@pytest.mark.parametrize("name", ["nl\n", "ok\n", "a\nb", "x\r", "", ".hidden", "a/b", "a..b", "x" * 65])
def test_names_with_a_newline_or_a_path_are_refused(workspace, name):
    with pytest.raises(ValueError, match="is not allowed"):
        check_name(name)
    with pytest.raises(ValueError):
        workspace.dataset_dir(name)


# -- the command line and the sweep refuse the same values, in one line, before queueing ----


def _cli(capsys, *argv):
    from segcore.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


CLI_BAD = [
    (["--seed", "-1"], "setting train.seed is -1"),
    (["--image-size", "100000"], "setting train.image_size is 100000"),
    (["--lr", "inf"], "setting train.learning_rate is inf"),
    (["--loss", "diec"], "setting train.loss is 'diec'"),
    (["--filters", "0"], "setting model.filters is 0"),
    (["--dropout", "5"], "setting model.dropout is 5.0"),
    (["--patience", "-3"], "setting train.early_stopping_patience is -3"),
    (["--weights", "/no/such/file.h5"], "setting model.weights is '/no/such/file.h5'"),
]


@pytest.mark.parametrize("flags, message", CLI_BAD, ids=[f[0][0] for f in CLI_BAD])
def test_train_flags_are_refused_before_anything_is_queued(workspace, capsys, flags, message):
    make_shapes_dataset(workspace, "shapes", n=6)
    code, out, err = _cli(capsys, "train", "--dataset", "shapes", "--image-size", "32", "--depth", "3", *flags)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [err.strip()] and err.startswith(f"error: {message}")
    assert list_runs(workspace) == []


@pytest.mark.parametrize("data, setting", [
    ({"model": {"depth": 9}}, "model.depth"),
    ({"train": {"class_weighting": "yes"}}, "train.class_weighting"),
    ({"train": {"augment": {"enabled": "no"}}}, "train.augment.enabled"),
    ({"train": {"early_stopping_patience": -3}}, "train.early_stopping_patience"),
])
def test_config_files_are_refused_by_train_and_sweep(workspace, capsys, tmp_path, data, setting):
    make_shapes_dataset(workspace, "shapes", n=6)
    data = {**data, "train": {"dataset": "shapes", "image_size": 32, **data.get("train", {})}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    for command in ("train", "sweep"):
        code, out, err = _cli(capsys, command, str(path))
        assert code == 1, (command, out, err)
        assert err.startswith(f"error: setting {setting} is "), (command, err)
    assert list_runs(workspace) == []


def test_sweep_refuses_flags_and_takes_its_weights_per_encoder(workspace, capsys):
    make_shapes_dataset(workspace, "shapes", n=6)
    code, _, err = _cli(capsys, "sweep", "--dataset", "shapes", "--seed", "-1")
    assert code == 1 and err.startswith("error: setting train.seed is -1")
    # --weights imagenet is for the encoders; the plain U-Net row is queued with weights none
    from segcore.queue import launcher

    queued = []
    original = launcher.launch

    def no_worker_launch(cfg, ws=None, **kw):
        queued.append(cfg)
        return original(cfg, ws, **{**kw, "start_worker": False})

    mp = pytest.MonkeyPatch()
    mp.setattr(launcher, "launch", no_worker_launch)
    mp.setattr(launcher, "ensure_worker", lambda ws=None: False)
    try:
        code, out, err = _cli(capsys, "sweep", "--dataset", "shapes", "--image-size", "32", "--epochs", "2",
                              "--weights", "imagenet", "--models", "U-Net", "--json")
    finally:
        mp.undo()
    assert code == 0, err
    assert [c.model.weights for c in queued] == ["none"]


def test_the_learning_rate_defaults_to_the_encoders_own():
    """From scratch the plain U-Net starts at 1e-3; a pretrained encoder at 1e-4; a named rate always wins."""
    assert RunConfig().learning_rate == 1e-3
    assert RunConfig(model=ModelConfig(encoder="vgg16"), train=TrainConfig(image_size=64)).learning_rate == 1e-4
    named = RunConfig(train=TrainConfig(learning_rate=3e-4))
    assert named.learning_rate == 3e-4 and named.resolved() is named
    resolved = RunConfig().resolved()
    assert resolved.train.learning_rate == 1e-3
    assert RunConfig.from_dict(resolved.to_dict()) == resolved
    assert RunConfig.from_dict(RunConfig().to_dict()).train.learning_rate is None
