"""Each setting is declared once (``segcore.config.Setting``): the command line and the Train page are generated
from the declarations, so every setting has a flag and a widget (or says why not), and a new field is seen by both."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field

import pytest
from test_pages import app, demo_ws, fake_training, make_run  # noqa: F401  (fixtures)

from segcore import config
from segcore.config import AugmentConfig, ModelConfig, RunConfig, SplitConfig, TrainConfig, Widget
from segcore.training import cli

SECTIONS = {ModelConfig: "model.", TrainConfig: "train.", AugmentConfig: "train.augment.", SplitConfig: "train.split.",
            RunConfig: ""}


def parser(sweep: bool = False, root: type | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("config", nargs="?")
    cli._add_settings(p, sweep=sweep, root=root)
    return p


def option_strings(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions for o in a.option_strings}


@pytest.mark.parametrize("cls", list(SECTIONS), ids=lambda c: c.__name__)
def test_every_field_is_declared_with_a_flag_and_a_widget_or_a_reason(cls):
    found = {d.path: d for d in config.declared()}
    flags = option_strings(parser())
    for f in dataclasses.fields(cls):
        if config.nested_class(f) is not None:
            continue
        d = found[SECTIONS[cls] + f.name]
        assert d.meta.help, d.path
        if d.flag is None:
            assert d.meta.no_flag, f"{d.path} has no flag and no reason"
        else:
            assert d.flag in flags, d.path
        if d.meta.widget is None:
            assert d.meta.no_widget, f"{d.path} has no widget and no reason"
        else:
            assert d.key and d.key.startswith("train_"), d.path


def test_a_field_without_its_declaration_is_refused():
    @dataclass(frozen=True)
    class Bare(TrainConfig):
        warmup: int = 0

    @dataclass(frozen=True)
    class BareRun(RunConfig):
        train: Bare = field(default_factory=Bare)

    with pytest.raises(TypeError, match="setting train.warmup of Bare has no Setting"):
        config.declared(BareRun)


def test_widget_keys_and_flags_are_unique():
    declared = config.declared()
    keys = [d.key for d in declared if d.key]
    dests = [d.dest for d in declared if d.dest]
    assert len(keys) == len(set(keys)) and len(dests) == len(set(dests))


def test_new_flags_and_the_old_ones_build_the_same_settings():
    args = parser().parse_args(["--activation", "elu", "--upsampling", "upsample", "--no-augment", "--tta", "--lr", "3e-4",
                                "--learning-rate", "1e-3", "--budget", "90s", "--patience", "2", "--seed", "7",
                                "--no-hflip", "--zoom", "0.2", "--devices", "all", "--tag", "a", "--tag", "b"])
    cfg = cli.settings_from_args(args)
    m, t = cfg.model, cfg.train
    assert (m.activation, m.upsampling) == ("elu", "upsample")
    assert (t.augment.enabled, t.augment.hflip, t.augment.vflip, t.augment.zoom) == (False, False, True, 0.2)
    assert (t.tta, t.learning_rate, t.budget_minutes, t.early_stopping_patience) == (True, 1e-3, 1.5, 2)
    assert (t.seed, t.split.seed, t.devices, cfg.tags) == (7, 7, "all", ("a", "b"))
    # --freeze is a switch; --fine-tune-after implies fine-tuning; ids imply the ids split
    cfg = cli.settings_from_args(parser().parse_args(["--encoder", "vgg16", "--freeze", "--image-size", "64"]))
    assert cfg.model.freeze == "frozen"
    cfg = cli.settings_from_args(parser().parse_args(["--encoder", "vgg16", "--fine-tune-after", "3", "--image-size", "64",
                                                      "--train-ids", "1-3, 5"]))
    assert (cfg.model.freeze, cfg.model.fine_tune_after) == ("fine_tune", 3)
    assert (cfg.train.split.method, cfg.train.split.train_ids) == ("ids", ("1-3", "5"))
    # a flag not given leaves the setting alone: the defaults, None for "the encoder's own" rate included
    assert cli.settings_from_args(parser().parse_args([])) == RunConfig()
    assert cli.settings_from_args(parser().parse_args([])).train.learning_rate is None


def test_sweep_takes_the_shared_settings_only():
    sweep_flags = option_strings(parser(sweep=True))
    assert {"--activation", "--upsampling", "--norm", "--epochs", "--no-augment"} <= sweep_flags
    assert not {"--encoder", "--freeze", "--init-from-run"} & sweep_flags
    # the sweep's own --fine-tune-after (the study's frozen epochs) is not the setting's
    from segcore.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "--fine-tune-after" in option_strings(sub.choices["sweep"])


def test_an_old_config_holding_batch_norm_loads_to_the_same_settings(tmp_path):
    for old, norm in ((True, "batch"), (False, "none"), (None, "group")):
        data = RunConfig(model=ModelConfig(norm=norm, depth=3)).to_dict()
        del data["model"]["norm"]
        data["model"]["batch_norm"] = old
        if old is None:  # written after norm existed: both keys, batch_norm null
            data["model"]["norm"] = norm
        path = tmp_path / "config.json"
        path.write_text(json.dumps(data))
        loaded = RunConfig.from_dict(json.loads(path.read_text()))
        assert loaded == RunConfig(model=ModelConfig(norm=norm, depth=3))
        assert "batch_norm" not in loaded.to_dict()["model"]
        assert cli.settings_from_args(parser().parse_args([str(path)])) == loaded
    # as before, batch_norm wins over a norm beside it, and must be a boolean
    assert RunConfig.from_dict({"model": {"batch_norm": True, "norm": "group"}}).model.norm == "batch"
    with pytest.raises(config.SettingError, match="setting model.batch_norm is 'yes'; expected true or false"):
        RunConfig.from_dict({"model": {"batch_norm": "yes"}})
    with pytest.raises(TypeError):
        ModelConfig(batch_norm=True)  # not a field any more: only old files hold it


# -- a setting added in one place is on the command line and on the page ---------------------------


@dataclass(frozen=True)
class WarmupTrain(TrainConfig):
    warmup_epochs: int = config.setting(0, "epochs of linear learning-rate warm-up", metavar="N",
                                        widget=Widget("number", "Warm-up epochs", values=(0, 50)))


@dataclass(frozen=True)
class WarmupRun(RunConfig):
    train: WarmupTrain = field(default_factory=WarmupTrain)


def test_a_new_setting_is_a_flag_without_touching_the_command_line():
    p = parser(root=WarmupRun)
    assert "--warmup-epochs" in option_strings(p)
    cfg = cli.settings_from_args(p.parse_args(["--warmup-epochs", "3", "--epochs", "9"]), base=WarmupRun())
    assert isinstance(cfg.train, WarmupTrain) and (cfg.train.warmup_epochs, cfg.train.epochs) == (3, 9)
    assert config.from_dict(WarmupRun, cfg.to_dict()) == cfg


def test_a_new_setting_is_a_widget_without_touching_the_page(demo_ws, fake_training, monkeypatch):
    monkeypatch.setattr(config, "RunConfig", WarmupRun)  # as if the field were written into TrainConfig
    at = app().run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    widget = at.number_input(key="train_warmup_epochs")
    assert widget.label == "Warm-up epochs" and widget.value == 0
    widget.set_value(4).run()
    at.button(key="train_launch").click().run()
    cfg = fake_training["launch"][-1]
    assert isinstance(cfg, WarmupRun) and cfg.train.warmup_epochs == 4


# -- the page: a widget for every setting that has one, starting at the settings' defaults ----------


def page_keys(at) -> set[str]:
    return {w.key for kind in ("selectbox", "select_slider", "slider", "number_input", "toggle", "checkbox", "radio",
                               "text_input") for w in getattr(at, kind) if w.key}


def test_every_declared_widget_is_on_the_train_page_with_its_default(demo_ws, fake_training):
    make_run(demo_ws, name="earlier")  # a finished run: "start from the weights of an earlier run" is offered
    at = app().run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    seen = page_keys(at)
    at.button(key="train_launch").click().run()
    launched = fake_training["launch"][-1]
    assert launched == RunConfig(train=TrainConfig(dataset="demo"))  # untouched, the form is the defaults
    at.selectbox(key="train_encoder").set_value("vgg16").run()
    at.select_slider(key="train_size").set_value(64).run()
    assert not at.exception
    seen |= page_keys(at)
    wanted = {d.key: d.path for d in config.declared() if d.key}
    missing = {path for key, path in wanted.items() if key not in seen}
    assert not missing, f"settings without a widget on the Train page: {sorted(missing)}"
    # a pretrained encoder starts from its ImageNet weights (what it is picked for), the rest from the defaults
    at.button(key="train_launch").click().run()
    m = fake_training["launch"][-1].model
    assert (m.weights, m.freeze, m.fine_tune_after, m.fine_tune_lr_factor, m.norm) == (
        "imagenet", ModelConfig().freeze, ModelConfig().fine_tune_after, ModelConfig().fine_tune_lr_factor,
        ModelConfig().norm)
