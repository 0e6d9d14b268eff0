"""``python -m segcore``: the command line gathers every stage's commands."""

from __future__ import annotations

import sys

import pytest

from segcore import cli


def test_every_stage_registers_its_commands():
    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)
    assert {"import", "datasets", "models", "train", "runs", "eval", "predict", "sweep"} <= commands


def test_a_stage_that_cannot_be_imported_is_an_error_not_a_missing_command(monkeypatch):
    """Every stage ships with segcore: one that fails to import is a broken installation, said at once."""
    monkeypatch.setitem(sys.modules, "segcore.models.cli", None)  # import raises ModuleNotFoundError
    with pytest.raises(ModuleNotFoundError, match="segcore.models.cli"):
        cli.build_parser()


def test_commands_print_one_json_line_and_notes_on_stderr(capsys):
    import numpy as np

    from segcore.cliutil import err, print_json

    print_json({"n": np.int64(3), "a": np.arange(2), "p": cli})
    err("a note")
    out, note = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith('{"n": 3, "a": [0, 1], "p": "<module')
    assert note == "a note\n"


def test_eval_and_predict_come_from_their_stages_after_the_run_commands():
    from segcore.evaluation import cli as eval_cli
    from segcore.prediction import cli as predict_cli

    sub = cli.build_parser()._subparsers._group_actions[0]
    commands = list(sub.choices)
    assert commands.index("sweep") < commands.index("eval") < commands.index("predict")
    assert sub.choices["eval"].get_default("func").__wrapped__ is eval_cli.cmd_eval
    assert sub.choices["predict"].get_default("func").__wrapped__ is predict_cli.cmd_predict
