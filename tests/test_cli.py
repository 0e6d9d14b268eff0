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
