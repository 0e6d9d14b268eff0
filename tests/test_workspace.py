import pytest

from segcore.config import ModelConfig, RunConfig, SplitConfig, TrainConfig
from segcore.fsutil import check_name, read_json, write_json_atomic
from segcore.workspace import get_workspace


def test_workspace_env_var_picks_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCORE_WORKSPACE", str(tmp_path / "w"))
    ws = get_workspace()
    assert ws.root == (tmp_path / "w").resolve()
    assert ws.datasets_dir.is_dir() and ws.runs_dir.is_dir()


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "..", ".hidden", "a" * 65, "x..y", "/abs"])
def test_bad_names_are_refused(bad, workspace):
    with pytest.raises(ValueError, match="not allowed"):
        check_name(bad)
    with pytest.raises(ValueError):
        workspace.dataset_dir(bad)


def test_inside_refuses_escape(workspace, tmp_path):
    with pytest.raises(ValueError, match="outside"):
        workspace.inside(workspace.root / ".." / "elsewhere")


def test_atomic_json_round_trip(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert read_json(tmp_path / "a.json") == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind


def test_run_config_round_trip_and_unknown_key():
    cfg = RunConfig(
        model=ModelConfig(encoder="vgg16", freeze="fine_tune", fine_tune_after=3),
        train=TrainConfig(dataset="demo", split=SplitConfig(method="ids", train_ids=("1-27",))),
        tags=("a",),
    )
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    bad = cfg.to_dict()
    bad["train"]["epoch"] = 3
    with pytest.raises(ValueError, match="epoch"):
        RunConfig.from_dict(bad)
