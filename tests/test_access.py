"""Roles and who-did-what: the rules of segcore.access, segcore's own functions refusing what a role may not
do, the audit records, server.json's role settings, and the refusal to serve beyond localhost without sign-in."""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from segcore import access, runs
from segcore import queue as run_queue
from segcore.access import AccessDenied, Actor, actor_from_claims, denial, local_actor
from segcore.config import ModelConfig, RunConfig, TrainConfig
from segcore.data.imports import import_dataset
from segcore.workspace import ServerSettings
from tests.test_pages import make_dataset

PROJECT = Path(__file__).resolve().parent.parent
VIEWER = Actor(who="vera@lab.org", role="viewer", signed_in=True)
TRAINER = Actor(who="tom@lab.org", role="trainer", signed_in=True)
OTHER_TRAINER = Actor(who="tina@lab.org", role="trainer", signed_in=True)
ADMIN = Actor(who="ana@lab.org", role="admin", signed_in=True)
CFG = RunConfig(model=ModelConfig(depth=3, filters=8), train=TrainConfig(dataset="demo", epochs=1, image_size=32), name="tiny")


# --------------------------------------------------------------------------- the rules


def test_each_role_may_do_its_actions_and_no_more():
    for action in ("browse", "compare", "predict", "notes"):
        assert all(a.may(action) for a in (VIEWER, TRAINER, ADMIN))
    for action in ("launch", "import", "stop", "resume", "delete", "reorder", "settings"):
        assert not VIEWER.may(action, owner=VIEWER.who), action
    assert TRAINER.may("launch") and TRAINER.may("import") and not TRAINER.may("settings")
    assert ADMIN.may("settings")
    with pytest.raises(ValueError, match="unknown action 'fly'"):
        denial(ADMIN, "fly")


def test_a_trainer_stops_resumes_and_deletes_only_their_own_runs():
    for action in ("stop", "resume", "delete", "reorder"):
        assert TRAINER.may(action, owner=TRAINER.who)
        assert not TRAINER.may(action, owner=OTHER_TRAINER.who)
        assert not TRAINER.may(action, owner=None)  # launched before anyone was recorded
        assert ADMIN.may(action, owner=OTHER_TRAINER.who) and ADMIN.may(action, owner=None)
    reason = denial(TRAINER, "delete", OTHER_TRAINER.who)
    assert reason == "tom@lab.org is a trainer; a trainer may delete only their own runs, and this one was launched by tina@lab.org"
    assert denial(VIEWER, "launch") == "vera@lab.org is a viewer; launch needs the trainer role"


def test_roles_are_matched_on_email_or_group_and_the_highest_wins():
    settings = ServerSettings(roles={"Ana@Lab.org": "admin", "group:ml-team": "trainer", "tom@lab.org": "viewer"},
                              default_role="viewer", group_claim="groups")
    assert actor_from_claims({"email": "ana@lab.ORG"}, settings).role == "admin"  # e-mail case does not matter
    tom = actor_from_claims({"email": "tom@lab.org", "name": "Tom", "groups": ["ml-team", "x"]}, settings)
    assert (tom.role, tom.name, tom.groups, tom.signed_in) == ("trainer", "Tom", ("ml-team", "x"), True)
    assert actor_from_claims({"email": "new@lab.org"}, settings).role == "viewer"  # the default role
    assert actor_from_claims({"email": "x@y.org", "groups": "ml-team"}, settings).role == "trainer"  # a single group as text
    closed = ServerSettings(roles={"ana@lab.org": "admin"}, default_role="none")
    nobody = actor_from_claims({"email": "new@lab.org"}, closed)
    assert nobody.role == "none" and not nobody.may("browse")
    other_claim = ServerSettings(roles={"group:seg": "admin"}, group_claim="roles")
    assert actor_from_claims({"email": "a@b.org", "roles": ["seg"], "groups": []}, other_claim).role == "admin"
    with pytest.raises(ValueError, match="no e-mail address"):
        actor_from_claims({"sub": "123"}, settings)


def test_each_role_is_summed_up_in_words():
    assert access.role_summary("viewer") == "viewer: browse, compare, predict, notes"
    assert access.role_summary("trainer") == ("trainer: browse, compare, predict, notes, import, launch; "
                                              "stop, resume, delete, reorder their own runs")
    assert access.role_summary("admin") == "admin: everything, every run"


def test_without_sign_in_the_local_user_is_an_admin():
    me = local_actor()
    assert me.role == "admin" and not me.signed_in and me.who


def test_role_settings_in_server_json_are_read_strictly(workspace):
    path = workspace.settings_path
    good = {"roles": {"ana@lab.org": "admin", "group:ml": "trainer"}, "default_role": "none", "group_claim": "roles"}
    path.write_text(json.dumps(good))
    settings = workspace.settings()
    assert settings.roles == {"ana@lab.org": "admin", "group:ml": "trainer"} and settings.default_role == "none"
    for data, expected in [
        ({"roles": {"ana@lab.org": "boss"}}, "roles['ana@lab.org'] is 'boss'; expected one of viewer, trainer, admin"),
        ({"roles": {"ana": "admin"}}, "roles has the key 'ana'; expected an e-mail address"),
        ({"roles": ["ana@lab.org"]}, "roles is ['ana@lab.org']; expected an object"),
        ({"default_role": "owner"}, "default_role is 'owner'"),
        ({"group_claim": ""}, "group_claim is ''"),
        ({"role": {"ana@lab.org": "admin"}}, "unknown ServerSettings setting(s) ['role']"),
    ]:
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError) as err:
            workspace.settings()
        assert str(err.value).startswith(f"{path}: ") and expected in str(err.value), str(err.value)


# --------------------------------------------------------------------------- segcore refuses, and records


@pytest.fixture
def demo(workspace):
    make_dataset(workspace, n=8, size=32)
    return workspace


def test_launch_refuses_a_viewer_before_anything_is_written_and_records_a_trainer(demo):
    with pytest.raises(AccessDenied, match="vera@lab.org is a viewer; launch needs the trainer role"):
        run_queue.launch(CFG, demo, start_worker=False, actor=VIEWER)
    assert runs.list_runs(demo) == []
    from segcore.queue.sweep import queue_sweep

    with pytest.raises(AccessDenied):
        queue_sweep(CFG, demo, weights="none", actor=VIEWER)
    assert runs.list_runs(demo) == []
    run_id = run_queue.launch(CFG, demo, start_worker=False, actor=TRAINER)
    run = runs.open_run(run_id, demo)
    (entry,) = run.read_audit()
    assert (entry.who, entry.role, entry.action) == ("tom@lab.org", "trainer", "launch") and entry.at.endswith("Z")
    assert run.owner() == "tom@lab.org"


def test_stop_resume_delete_and_notes_refuse_and_record(demo):
    run_id = run_queue.launch(CFG, demo, start_worker=False, actor=TRAINER)
    run = runs.open_run(run_id, demo)
    for fn in (lambda a: run_queue.stop(run_id, demo, actor=a), lambda a: runs.delete_run(run_id, demo, force=True, actor=a)):
        for who in (VIEWER, OTHER_TRAINER):
            with pytest.raises(AccessDenied):
                fn(who)
    assert run.true_status()["state"] == "queued" and run.exists()
    run_queue.stop(run_id, demo, actor=TRAINER)  # a queued run: cancelled at once
    with pytest.raises(AccessDenied, match="only their own runs"):
        run_queue.resume(run_id, demo, start_worker=False, actor=OTHER_TRAINER)
    run_queue.resume(run_id, demo, start_worker=False, actor=ADMIN)
    runs.set_notes(run_id, "looks good", demo, actor=VIEWER)  # viewers may write notes
    runs.set_tags(run_id, ["keep"], demo, actor=VIEWER)
    runs.set_notes(run_id, "looks good", demo, actor=VIEWER)  # unchanged: nothing new recorded
    with pytest.raises(AccessDenied):
        runs.set_notes(run_id, "x", demo, actor=Actor(who="no@lab.org", role="none"))
    got = [(e.who, e.action, e.detail) for e in run.read_audit()]
    assert got == [("tom@lab.org", "launch", ""), ("tom@lab.org", "stop", "before it started"),
                   ("ana@lab.org", "resume", "from stopped"), ("vera@lab.org", "notes", "10 characters"),
                   ("vera@lab.org", "tags", "keep")]
    new_id = run_queue.rerun(run_id, demo, start_worker=False, actor=OTHER_TRAINER)
    assert [(e.who, e.action, e.detail) for e in runs.open_run(new_id, demo).read_audit()] == [
        ("tina@lab.org", "launch", f"re-run of {run_id}")]
    run_queue.stop(run_id, demo, actor=TRAINER)
    runs.delete_run(run_id, demo, actor=TRAINER)
    assert not run.exists()
    deleted = runs.read_audit(runs.workspace_audit_path(demo))
    assert [(e.who, e.action, e.detail) for e in deleted] == [("tom@lab.org", "delete", run_id)]


def test_a_torn_audit_line_is_skipped_and_the_rest_read(demo):
    run_id = run_queue.launch(CFG, demo, start_worker=False, actor=TRAINER)
    run = runs.open_run(run_id, demo)
    with open(run.audit_path, "ab") as f:
        f.write(b'{"at": "2026-01-01T00:00:00Z", "who": "x"\n["not a record"]\n')
    run_queue.stop(run_id, demo, actor=TRAINER)
    assert [e.action for e in run.read_audit()] == ["launch", "stop"]
    from segcore import visualize as viz

    rows = viz.audit_rows(run.read_audit())
    assert [r["Action"] for r in rows] == ["stopped", "launched"] and rows[0]["Who"] == "tom@lab.org"


def test_an_import_records_who_imported_it_and_refuses_a_viewer(workspace, tmp_path):
    src = tmp_path / "pairs"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for i in range(3):
        cv2.imwrite(str(src / "images" / f"a{i}.png"), np.full((16, 16, 3), 40 * i, np.uint8))
        mask = np.zeros((16, 16), np.uint8)
        mask[4:10, 4:10] = 1
        cv2.imwrite(str(src / "masks" / f"a{i}.png"), mask)
    with pytest.raises(AccessDenied, match="import needs the trainer role"):
        import_dataset(src, "pairs", workspace=workspace, actor=VIEWER)
    assert not workspace.dataset_dir("pairs").exists()
    report = import_dataset(src, "pairs", workspace=workspace, actor=TRAINER)
    assert report.ok, report.error
    record = json.loads((workspace.dataset_dir("pairs") / "dataset.json").read_text())
    by = record["source"]["imported_by"]
    assert (by["who"], by["role"]) == ("tom@lab.org", "trainer") and by["at"].startswith("20")
    from segcore import visualize as viz

    assert viz.imported_by_text(record["source"]) == f"Imported by tom@lab.org (trainer), {by['at'][:10]} {by['at'][11:16]} UTC"
    assert viz.imported_by_text({"path": "/x"}) is None and viz.imported_by_text({"imported_by": "tom"}) is None


def test_pages_pass_the_session_actor_to_every_guarded_segcore_call():
    """A page that forgot ``actor=`` would act as the local admin: every such call in app_pages/ names the actor."""
    guarded = {"launch", "stop", "resume", "rerun", "delete_run", "set_notes", "set_tags", "move_up", "import_dataset",
               "import_upload", "queue_sweep", "queue_seeds", "queue_folds", "start_quick_start"}
    missing, pages = [], sorted((PROJECT / "app_pages").glob("*.py"))
    assert len(pages) >= 6, "the pages were not found"
    for path in pages:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "st":
                continue  # st.stop(), st.rerun()
            if name in guarded and not any(k.arg in ("actor", None) for k in node.keywords):
                missing.append(f"{path.name}:{node.lineno} {name}")
    assert not missing, missing


# --------------------------------------------------------------------------- who may reach the server


@pytest.mark.parametrize("address,ok", [("localhost", True), ("127.0.0.1", True), ("::1", True), ("127.0.1.1", True),
                                        ("0.0.0.0", False), ("192.168.1.5", False), ("", False), (None, False)])
def test_only_loopback_addresses_are_local(address, ok):
    assert access.is_local_address(address) is ok


def _start(tmp_path, *args, secrets=None, **env):
    project = tmp_path / "project"
    if not project.exists():
        (project / "scripts").mkdir(parents=True)
        (project / ".streamlit").mkdir()
        (project / "scripts" / "start.sh").write_text((PROJECT / "scripts" / "start.sh").read_text())
        (project / ".streamlit" / "config.toml").write_text((PROJECT / ".streamlit" / "config.toml").read_text())
        os.symlink(PROJECT / "segcore", project / "segcore")
    secret_file = project / ".streamlit" / "secrets.toml"
    if secrets is None:
        secret_file.unlink(missing_ok=True)
    else:
        secret_file.write_text(secrets)
    full_env = {k: v for k, v in os.environ.items() if k not in ("SEGCORE_ALLOW_OPEN", "STREAMLIT_SERVER_ADDRESS")}
    full_env.update(SEGCORE_START_DRY_RUN="1", SEGCORE_ACCELERATOR="cpu", HOME=str(tmp_path), **env)
    return subprocess.run(["bash", str(project / "scripts" / "start.sh"), *args], env=full_env, capture_output=True,
                          text=True, timeout=60)


def test_start_refuses_to_serve_beyond_localhost_without_sign_in(tmp_path):
    assert _start(tmp_path).returncode == 0  # localhost, from config.toml
    assert _start(tmp_path, "--server.address", "127.0.0.1").returncode == 0
    refused = _start(tmp_path, "--server.address", "0.0.0.0")
    assert refused.returncode == 1 and "refusing to serve on --server.address 0.0.0.0 without sign-in" in refused.stderr
    assert "accelerator=" not in refused.stdout  # refused before anything else
    assert _start(tmp_path, "--server.address=0.0.0.0").returncode == 1
    assert _start(tmp_path, "--server.address", "0.0.0.0", STREAMLIT_SERVER_ADDRESS="127.0.0.1").returncode == 1
    # told so explicitly, by the flag or the variable
    assert _start(tmp_path, "--allow-open", "--server.address", "0.0.0.0").returncode == 0
    assert _start(tmp_path, "--server.address", "0.0.0.0", SEGCORE_ALLOW_OPEN="1").returncode == 0
    bad = _start(tmp_path, "--server.address", "0.0.0.0", SEGCORE_ALLOW_OPEN="maybe")
    assert bad.returncode == 1 and "$SEGCORE_ALLOW_OPEN is 'maybe'" in bad.stderr
    # with sign-in configured
    auth = '[auth]\nredirect_uri = "https://seg.example/oauth2callback"\ncookie_secret = "x"\nclient_id = "c"\n'
    assert _start(tmp_path, "--server.address", "0.0.0.0", secrets=auth).returncode == 0
    broken = _start(tmp_path, "--server.address", "0.0.0.0", secrets="[auth\n")
    assert broken.returncode == 1 and "secrets.toml is not valid TOML" in broken.stderr


# --------------------------------------------------------------------------- the pages, through AppTest

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "segcore",
        "client_secret": "s", "server_metadata_url": "https://id.example/.well-known/openid-configuration"}
APP = str(PROJECT / "streamlit_app.py")


def signed_in_app(email: str, name: str = "", groups=()):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": email, "name": name or email, "groups": list(groups)}
    return at.run()  # through the router first, as a browser's first visit is


@pytest.fixture
def team(demo, monkeypatch):
    """The small demo dataset, roles in server.json, and a stopped run launched by tom; no demo generator."""
    import segcore.data.demo as demo_mod

    monkeypatch.setattr(demo_mod, "ensure_demo", lambda ws, *a, **k: None)
    demo.settings_path.write_text(json.dumps({"roles": {"tom@lab.org": "trainer", "group:leads": "admin"},
                                              "default_role": "viewer"}))
    run_id = run_queue.launch(CFG, demo, start_worker=False, actor=TRAINER)
    run_queue.stop(run_id, demo, actor=TRAINER)
    return demo, run_id


def _button(at, key):
    return next(b for b in at.button if b.key == key)


def test_the_runs_and_train_pages_disable_what_a_viewer_may_not_do(team):
    ws, run_id = team
    at = signed_in_app("vera@lab.org", "Vera")
    assert "Signed in as **Vera** · viewer" in [m.value for m in at.sidebar.markdown]
    assert "A viewer: browse, compare, predict, notes." in [c.value for c in at.sidebar.caption]
    at.query_params["run"] = run_id
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    for key in (f"runs_resume_{run_id}", f"rerun_{run_id}"):
        assert _button(at, key).disabled, key
    assert "is a viewer; resume needs the trainer role" in _button(at, f"runs_resume_{run_id}").help
    assert not _button(at, f"save_notes_{run_id}").disabled
    at.switch_page("app_pages/train.py").run()
    assert _button(at, "train_launch").disabled
    assert any("launch needs the trainer role" in i.value for i in at.info)


def test_a_trainer_may_act_on_their_own_run_and_an_admin_group_on_any(team):
    ws, run_id = team
    at = signed_in_app("tom@lab.org")
    at.query_params["run"] = run_id
    at.switch_page("app_pages/runs.py").run()
    assert not _button(at, f"runs_resume_{run_id}").disabled and not _button(at, f"rerun_{run_id}").disabled
    at.switch_page("app_pages/train.py").run()
    assert not at.info or not any("needs the trainer role" in i.value for i in at.info)
    other = signed_in_app("tina@lab.org", groups=["ml"])  # a viewer by default
    other.query_params["run"] = run_id
    other.switch_page("app_pages/runs.py").run()
    assert _button(other, f"runs_resume_{run_id}").disabled
    lead = signed_in_app("lena@lab.org", groups=["leads"])
    assert "· admin" in lead.sidebar.markdown[0].value
    lead.query_params["run"] = run_id
    lead.switch_page("app_pages/runs.py").run()
    assert not lead.exception and not _button(lead, f"runs_resume_{run_id}").disabled


def test_someone_without_a_role_sees_only_why(team):
    ws, run_id = team
    ws.settings_path.write_text(json.dumps({"roles": {"tom@lab.org": "trainer"}, "default_role": "none"}))
    at = signed_in_app("eve@else.org")
    assert not at.exception
    assert "who has no role on this server" in at.warning[0].value and "else.org" in at.warning[0].value
    assert [t.value for t in at.title] == ["segcore"] and _button(at, "logout")
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # the pages are not even registered
        at.switch_page("app_pages/runs.py")


def test_a_broken_server_json_is_one_message_naming_it(team):
    ws, run_id = team
    ws.settings_path.write_text(json.dumps({"roles": {"tom@lab.org": "boss"}}))
    at = signed_in_app("tom@lab.org")
    assert [t.value for t in at.title] == ["segcore"] and _button(at, "logout")
    assert "server.json" in at.error[0].value and "is 'boss'; expected one of viewer, trainer, admin" in at.error[0].value


def test_the_dashboard_serves_only_a_refusal_beyond_localhost_without_sign_in(demo, monkeypatch):
    import streamlit
    from streamlit.testing.v1 import AppTest

    import segcore.data.demo as demo_mod

    monkeypatch.setattr(demo_mod, "ensure_demo", lambda ws, *a, **k: None)
    real = streamlit.get_option
    monkeypatch.setattr(streamlit, "get_option", lambda key: "0.0.0.0" if key == "server.address" else real(key))
    monkeypatch.delenv("SEGCORE_ALLOW_OPEN", raising=False)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "refusing to serve on --server.address 0.0.0.0 without sign-in" in at.error[0].value
    assert not [t for t in at.title if t.value == "Home"]
    monkeypatch.setenv("SEGCORE_ALLOW_OPEN", "1")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.error and not at.exception


def test_the_command_line_acts_as_the_local_user(demo, capsys):
    from segcore.cli import main

    run_id = run_queue.launch(CFG, demo, start_worker=False)  # a library call without actor= is the local user too
    assert main(["stop", run_id, "--wait", "0"]) == 0
    me = local_actor().who
    assert [(e.who, e.role, e.action) for e in runs.open_run(run_id, demo).read_audit()] == [
        (me, "admin", "launch"), (me, "admin", "stop")]
