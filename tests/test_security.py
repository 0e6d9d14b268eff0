"""Hostile inputs: nothing an upload or a form field holds reaches outside what it was given.

Every hostile input is written by the tests themselves (no stored binaries) and
tried through the command line and through the Data page. A secret image and
a secret text file are planted beside the workspace, outside any import root;
after every test, no dataset holds the secret image and nothing segcore wrote
mentions the secret text, and nothing was written outside the workspace.
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import struct
import tomllib
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from segcore.cli import main
from segcore.data import paths
from segcore.data.dataset import list_datasets, load_dataset
from segcore.data.imports import import_dataset
from segcore.data.options import ImportOptions, form_options
from segcore.fsutil import make_temp_dir, write_bytes_atomic, write_json_atomic
from test_pages import APP, media  # noqa: F401  (fixture)

PROJECT = Path(__file__).resolve().parent.parent
APP = str(PROJECT / "streamlit_app.py")
SECRET_TEXT = "TOPSECRET-7f3a"
EVIL_NAMES = ("<img src=x onerror=alert(1)>", "[click](https://evil.example/x)", "![t](https://evil.example/t.png)")


# --------------------------------------------------------------------------- the corpus


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def _labelme(image_path: str | None, label: str = "cell", image_data: bytes | None = None) -> str:
    doc = {
        "shapes": [{"label": label, "points": [[2, 2], [12, 2], [12, 12], [2, 12]], "shape_type": "polygon"}],
        "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode() if image_data else None,
        "imageHeight": 16,
        "imageWidth": 16,
    }
    return json.dumps(doc)


def _climb(target: Path) -> str:
    """A relative path that climbs out of any folder and lands on ``target``."""
    return "../" * 40 + str(target).lstrip("/")


def _labelme_zip(path: Path, evil_path: str, label: str = "cell") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/a.png", _png(_image(1)))
        zf.writestr("data/a.json", _labelme("a.png", label))
        zf.writestr("data/evil.json", _labelme(evil_path))
    return path


def _coco_zip(path: Path, evil_name: str) -> Path:
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "height": 16, "width": 16}, {"id": 2, "file_name": evil_name, "height": 16, "width": 16}],
        "annotations": [
            {"id": k, "image_id": k, "category_id": 1, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]} for k in (1, 2)
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("coco/images/a.png", _png(_image(1)))
        zf.writestr("coco/annotations.json", json.dumps(doc))
    return path


def _paired(folder: Path, n: int = 2) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    for i in range(n):
        (folder / "images" / f"s{i}.png").write_bytes(_png(_image(10 + i)))
        (folder / "masks" / f"s{i}.png").write_bytes(_png(mask))
    return folder


def _with_links(folder: Path, secret: Path) -> Path:
    """A paired folder whose images/ and masks/ hold links to the secret, and a linked folder."""
    _paired(folder)
    (folder / "images" / "evil.png").symlink_to(secret)
    (folder / "masks" / "evil.png").symlink_to(secret)
    (folder / "images_elsewhere").symlink_to(secret.parent, target_is_directory=True)
    return folder


def _polygons_with_link(folder: Path, secret_txt: Path) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for stem in ("a", "b"):
        (folder / "images" / f"{stem}.png").write_bytes(_png(_image(20)))
    (folder / "labels" / "a.txt").write_text("cell 2 2 12 2 12 12 2 12\n")
    (folder / "labels" / "b.txt").symlink_to(secret_txt)
    return folder


@pytest.fixture
def hostile(tmp_path, workspace):
    """The workspace, a planted secret image and text outside it, and checks that neither leaked."""
    srv = tmp_path / "srv"
    srv.mkdir()
    secret = _image(666)
    (srv / "secret.png").write_bytes(_png(secret))
    (srv / "secret.txt").write_text(f"{SECRET_TEXT} 1 1 5 1 5 5\n{SECRET_TEXT}-line-2\n")
    (srv / "classes.txt").write_text(f"background\n{SECRET_TEXT}\n")
    (srv / "colors.json").write_text(json.dumps({"background": [0, 0, 0], SECRET_TEXT: [255, 255, 255]}))
    (srv / "private_folder_name").mkdir()
    before = _snapshot(tmp_path)
    yield workspace, srv
    for info in list_datasets(workspace):
        ds = load_dataset(info.name, workspace)
        for sid in ds.ids:
            assert not np.array_equal(ds.image(sid), secret), f"the secret image outside the import root is in dataset {info.name!r}"
    for p in workspace.root.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.suffix in (".json", ".csv", ".txt", ".log"):
            assert SECRET_TEXT not in p.read_text(errors="replace"), f"{p} holds text read from outside the import root"
    new = {p for p in _snapshot(tmp_path) - before if not p.startswith(("ws", "in")) and not p.endswith(".zip")}
    assert not new, f"files written outside the workspace: {sorted(new)}"


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _cli_import(capsys, path, name, *extra) -> dict:
    rc = main(["import", str(path), "--name", name, "--json", *extra])
    report = json.loads(capsys.readouterr().out)
    assert rc == (0 if report["ok"] else 1)
    return report


def _problems(report: dict, kind: str) -> list[dict]:
    return [p for p in report["problems"] if p["kind"] == kind]


def _zip_bytes(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "application/zip")


def _data_page(timeout: int = 60) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    at.switch_page("app_pages/data.py").run()
    assert not at.exception
    return at


def _page_text(at) -> str:
    parts = [m.value for kind in ("markdown", "caption", "error", "warning", "success", "info") for m in at.get(kind)]
    parts += [e.label for e in at.get("expander")]
    return "\n".join(str(p) for p in parts)


def _page_upload(at, archive: Path, name: str, options: str = "") -> dict | None:
    at.radio(key="import_source").set_value("Upload a .zip").run()
    at.file_uploader(key="import_zip").set_value(_zip_bytes(archive)).run()
    next(t for t in at.text_input if t.label == "Dataset name").input(name).run()
    if options:
        at.text_area(key="import_options").input(options).run()
    if not at.button(key="import_go").disabled:
        at.button(key="import_go").click().run()
    assert not at.exception
    return at.session_state["import_report"] if "import_report" in at.session_state else None


@pytest.fixture
def no_demo(monkeypatch):
    import segcore.data.demo as demo

    monkeypatch.setattr(demo, "ensure_demo", lambda ws, *a, **k: None)


# --------------------------------------------------------------------------- paths named inside the data


@pytest.mark.parametrize("kind", ["absolute", "climbing"])
def test_labelme_image_path_outside_the_data_is_refused_cli(hostile, tmp_path, capsys, kind):
    ws, srv = hostile
    evil = str(srv / "secret.png") if kind == "absolute" else _climb(srv / "secret.png")
    report = _cli_import(capsys, _labelme_zip(tmp_path / "lm.zip", evil), "lm")
    assert report["ok"] and report["num_samples"] == 1
    refused = _problems(report, "outside_source")
    assert len(refused) == 1 and refused[0]["severity"] == "error" and refused[0]["files"] == ["evil.json"]
    assert "evil.json imagePath" in refused[0]["message"] and "expected a path relative to the imported folder" in refused[0]["message"]


def test_refusal_does_not_tell_an_existing_outside_file_from_a_missing_one(hostile, tmp_path, capsys):
    ws, srv = hostile
    existing, missing = str(srv / "secret.png"), str(srv / "absent.png")
    one = _problems(_cli_import(capsys, _labelme_zip(tmp_path / "a.zip", existing), "a"), "outside_source")[0]["message"]
    two = _problems(_cli_import(capsys, _labelme_zip(tmp_path / "b.zip", missing), "b"), "outside_source")[0]["message"]
    assert one.replace(existing, "X") == two.replace(missing, "X")
    coco_one = _cli_import(capsys, _coco_zip(tmp_path / "c.zip", existing), "c")
    coco_two = _cli_import(capsys, _coco_zip(tmp_path / "d.zip", missing), "d")
    m1, m2 = (_problems(r, "outside_source")[0]["message"] for r in (coco_one, coco_two))
    assert m1.replace(existing, "X") == m2.replace(missing, "X")


@pytest.mark.parametrize("kind", ["absolute", "climbing"])
def test_coco_file_name_outside_the_data_is_refused_cli(hostile, tmp_path, capsys, kind):
    ws, srv = hostile
    evil = str(srv / "secret.png") if kind == "absolute" else _climb(srv / "secret.png")
    report = _cli_import(capsys, _coco_zip(tmp_path / "coco.zip", evil), "coco")
    assert report["ok"] and report["num_samples"] == 1
    refused = _problems(report, "outside_source")
    assert len(refused) == 1 and "annotations.json images[1] file_name" in refused[0]["message"]
    assert "not inside the imported data" in refused[0]["message"]


def test_coco_absolute_file_name_with_a_copy_inside_uses_the_copy(hostile, tmp_path, capsys):
    """Annotators' own absolute paths are common: the file of that name inside the data is used, never the outside one."""
    ws, srv = hostile
    archive = _coco_zip(tmp_path / "coco.zip", str(srv / "secret.png"))
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("coco/images/secret.png", _png(_image(2)))
    report = _cli_import(capsys, archive, "coco")
    assert report["ok"] and report["num_samples"] == 2 and not _problems(report, "outside_source")
    assert np.array_equal(load_dataset("coco", ws).image("secret"), _image(2))


def test_labelme_and_coco_outside_paths_refused_on_the_data_page(hostile, tmp_path, no_demo):
    ws, srv = hostile
    at = _data_page()
    report = _page_upload(at, _labelme_zip(tmp_path / "lm.zip", _climb(srv / "secret.png")), "lm")
    assert report["ok"] and report["num_samples"] == 1
    assert any(p["kind"] == "outside_source" and "evil.json imagePath" in p["message"] for p in report["problems"])
    report = _page_upload(at, _coco_zip(tmp_path / "coco.zip", str(srv / "secret.png")), "coco")
    assert report["ok"] and report["num_samples"] == 1
    assert any(p["kind"] == "outside_source" and "file_name" in p["message"] for p in report["problems"])


def test_resolver_refuses_every_way_out(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"x")
    (root / "out").symlink_to(tmp_path, target_is_directory=True)
    assert paths.resolve_in_source(root, "a.png", field="f", base=root / "sub") == (root / "sub" / "a.png").resolve()
    assert paths.resolve_in_source(root, "../sub/a.png", field="f", base=root / "sub") == (root / "sub" / "a.png").resolve()
    for bad in ("/etc/passwd", "../../x", "sub/../../../x", "../out/anything", "", "a\x00b"):
        with pytest.raises(paths.OutsideSourceError, match="f "):
            paths.resolve_in_source(root, bad, field="f", base=root / "sub")


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "option, expected",
    [
        ('classes_file="/etc/passwd"', "import option classes_file names '/etc/passwd', which is not inside the imported data"),
        ("colors_file=\"../../srv/colors.json\"", "import option colors_file names '../../srv/colors.json', which is not inside"),
        ("max_pixels=1000000000", "['max_pixels'] are server settings, not import options: set ['max_image_pixels']"),
        ("max_bytes=1", "['max_bytes'] are server settings"),
        ("ignore_index=255", "unknown ImportOptions setting(s) ['ignore_index'] (ignore_index); valid ones are ["),
        ('ignore="x"', "import option ignore is 'x'; expected a list"),
        ("mask_encoding=\"png\"", "import option mask_encoding is 'png'; expected one of ['auto', 'binary'"),
    ],
)
def test_bad_import_options_are_refused_cli(hostile, tmp_path, capsys, option, expected):
    ws, srv = hostile
    src = _paired(tmp_path / "in")
    key, value = option.split("=", 1)
    report = _cli_import(capsys, src, "x", "--option", f"{key}={value}")
    assert not report["ok"] and expected in report["error"], report["error"]
    assert list_datasets(ws) == []


def test_classes_file_outside_via_the_secret_is_refused_and_not_read(hostile, tmp_path, capsys):
    ws, srv = hostile
    src = _paired(tmp_path / "in")
    report = _cli_import(capsys, src, "x", "--option", f'classes_file="{srv / "classes.txt"}"')
    assert not report["ok"] and SECRET_TEXT not in json.dumps(report)
    # Inside the data it is read, and from the machine's own files the CLI may read it (it runs as the owner).
    (src / "names.txt").write_text("background\ncell\n")
    assert _cli_import(capsys, src, "inside", "--option", 'classes_file="names.txt"')["classes"] == ["background", "cell"]
    (tmp_path / "in" / "mine.txt").write_text("background\nnucleus\n")
    assert _cli_import(capsys, src, "mine", "--classes-file", str(tmp_path / "in" / "mine.txt"))["classes"] == ["background", "nucleus"]


@pytest.mark.parametrize(
    "options, expected",
    [
        ('{"classes_file": "/etc/passwd"}', "import option classes_file names '/etc/passwd', which is not inside the imported data"),
        ('{"max_pixels": 1000000000}', "server settings, not import options"),
        ('{"ignore_index": 255}', "unknown ImportOptions setting(s) ['ignore_index'] (ignore_index); valid ones are"),
        ('{"workers": 100000}', "server settings, not import options"),
        ('[1, 2]', "Other options: got a JSON list; expected an object"),
    ],
)
def test_bad_import_options_are_refused_on_the_data_page(hostile, tmp_path, no_demo, options, expected):
    ws, srv = hostile
    archive = _labelme_zip(tmp_path / "lm.zip", "a.png")
    at = _data_page()
    report = _page_upload(at, archive, "lm", options)
    text = _page_text(at).replace("&#91;", "[").replace("&#93;", "]")
    assert expected in text, text
    assert report is None or not report["ok"]
    assert list_datasets(ws) == []


def test_data_page_has_no_server_path_fields_for_tables(hostile, no_demo):
    at = _data_page()
    labels = [w.label.lower() for kind in ("text_input", "text_area") for w in at.get(kind)]
    assert not any("file" in label or "path" in label for label in labels), labels
    uploads = {u.label for u in at.get("file_uploader")}
    assert any("class list" in u for u in uploads) and any("colour table" in u for u in uploads)


def test_class_list_and_colour_table_typed_or_uploaded_on_the_data_page(hostile, tmp_path, no_demo):
    ws, srv = hostile
    src = tmp_path / "in" / "colour"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for i in range(2):
        (src / "images" / f"a{i}.png").write_bytes(_png(_image(30 + i)))
        m = np.zeros((16, 16, 3), np.uint8)
        m[2:8, 2:8] = (128, 64, 128)
        (src / "masks" / f"a{i}.png").write_bytes(_png(m))
    archive = tmp_path / "colour.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*.png")):
            zf.write(p, p.relative_to(src))
    at = _data_page()
    at.file_uploader(key="import_colors_upload").set_value(("table.json", b'{"void": [0, 0, 0], "road": [128, 64, 128]}', "application/json")).run()
    report = _page_upload(at, archive, "colour")
    assert report["ok"] and report["classes"] == ["void", "road"]
    options = form_options(classes_text="background\ncell", ignore_text="11, 255", extra_text='{"invert": true}')
    assert options == ImportOptions(classes=("background", "cell"), ignore=(11, 255), invert=True)
    with pytest.raises(ValueError, match="Void values: 'x' is not a whole number"):
        form_options(ignore_text="1, x")
    with pytest.raises(ValueError, match=r"Other options: \['invert'\] are also set by the form fields"):
        form_options(invert=True, extra_text='{"invert": false}')


def test_options_round_trip_and_record_only_changes():
    opts = ImportOptions.from_dict({"classes": ["bg", "a"], "colors": {"bg": [0, 0, 0], "a": "#ff0000"}, "merge": {"x": "a"}, "ignore": 255})
    assert ImportOptions.from_dict(opts.to_dict()) == opts
    assert opts.colors == (("bg", (0, 0, 0)), ("a", (255, 0, 0))) and opts.ignore == (255,)
    assert set(opts.changed()) == {"classes", "colors", "merge", "ignore"}
    with pytest.raises(AttributeError):
        opts.invert = True  # frozen


# --------------------------------------------------------------------------- server limits


def test_limits_are_server_settings_read_strictly(hostile, tmp_path, capsys):
    ws, srv = hostile
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/a.png", _png(_image(1)))
        zf.writestr("data/a.json", _labelme("a.png"))
        zf.writestr("data/b.json", _labelme(None, image_data=_bomb_png(12_000, 12_000)))  # an image bomb, embedded
    write_json_atomic(ws.settings_path, {"max_image_pixels": 1_000_000})
    report = _cli_import(capsys, archive, "emb")
    assert report["ok"] and report["num_samples"] == 1
    bad = _problems(report, "unreadable")
    assert bad and "b.json imageData" in bad[0]["message"] and "1,000,000" in bad[0]["message"]
    write_json_atomic(ws.settings_path, {"max_pixel": 5})
    rc = main(["import", str(archive), "--name", "typo", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and "server.json" in out["error"] and "['max_pixel']" in out["error"] and "max_image_pixels" in out["error"]


# --------------------------------------------------------------------------- links inside imported folders


def test_links_leaving_an_imported_folder_are_skipped_and_named_cli(hostile, tmp_path, capsys):
    ws, srv = hostile
    src = _with_links(tmp_path / "in" / "linked", srv / "secret.png")
    report = _cli_import(capsys, src, "linked")
    assert report["ok"] and report["num_samples"] == 2
    links = _problems(report, "outside_link")
    assert links and links[0]["severity"] == "warning"
    assert set(links[0]["files"]) == {"images/evil.png", "masks/evil.png", "images_elsewhere"}
    assert "symbolic links lead outside the imported folder" in links[0]["message"]


def test_polygon_text_linked_outside_is_never_read(hostile, tmp_path, capsys):
    ws, srv = hostile
    src = _polygons_with_link(tmp_path / "in" / "poly", srv / "secret.txt")
    report = _cli_import(capsys, src, "poly", "--layout", "polygons")
    assert SECRET_TEXT not in json.dumps(report)
    assert any("labels/b.txt" in p["files"] for p in _problems(report, "outside_link"))


def test_links_inside_an_imported_folder_are_followed(hostile, tmp_path, capsys):
    ws, srv = hostile
    src = _paired(tmp_path / "in" / "dedupe")
    (src / "images" / "s9.png").symlink_to(src / "images" / "s0.png")
    (src / "masks" / "s9.png").symlink_to(src / "masks" / "s0.png")
    report = _cli_import(capsys, src, "dedupe")
    assert report["ok"] and report["num_samples"] == 3 and not _problems(report, "outside_link")


# --------------------------------------------------------------------------- folder import on the dashboard


@pytest.mark.parametrize("typed", ["/etc", "~", "/root", "../..", "{srv}", "link_out", "incoming/../../srv", "{srv}/nothing-here"])
def test_data_page_folder_import_is_limited_to_import_roots(hostile, no_demo, typed):
    ws, srv = hostile
    (ws.incoming_dir / "link_out").symlink_to(srv, target_is_directory=True)
    at = _data_page()
    at.radio(key="import_source").set_value("A folder on the server").run()
    at.text_input(key="import_folder").input(typed.format(srv=srv)).run()
    assert not at.exception
    text = _page_text(at)
    assert "not inside the import folders" in text and str(ws.incoming_dir) in text
    assert "private_folder_name" not in text and "Detected layout" not in text
    assert at.button(key="import_go").disabled


def test_refusal_of_outside_folders_is_the_same_for_existing_and_missing(hostile, no_demo):
    from segcore.safetext import markdown_text

    ws, srv = hostile
    messages, shown = [], []
    at = _data_page()
    at.radio(key="import_source").set_value("A folder on the server").run()
    for typed in (str(srv), str(srv / "no-such-folder")):
        with pytest.raises(ValueError) as err:
            ws.import_source(typed)
        messages.append(str(err.value).replace(repr(typed), "X"))
        at.text_input(key="import_folder").input(typed).run()
        shown.append(at.error[0].value.replace(markdown_text(repr(typed)), "X"))
    assert messages[0] == messages[1] and shown[0] == shown[1]


def test_data_page_imports_from_an_import_root_and_names_skipped_links(hostile, no_demo):
    ws, srv = hostile
    _with_links(ws.incoming_dir / "cells", srv / "secret.png")
    at = _data_page()
    at.radio(key="import_source").set_value("A folder on the server").run()
    at.text_input(key="import_folder").input("cells").run()
    assert any("Detected layout" in c.value for c in at.caption)
    at.button(key="import_go").click().run()
    assert not at.exception
    report = at.session_state["import_report"]
    assert report["ok"] and report["num_samples"] == 2
    links = [p for p in report["problems"] if p["kind"] == "outside_link"]
    assert links and "images/evil.png" in links[0]["files"]


def test_more_import_roots_from_the_environment_and_server_json(hostile, tmp_path, monkeypatch):
    ws, srv = hostile
    extra = tmp_path / "in" / "lab"
    _paired(extra / "set1")
    with pytest.raises(ValueError, match="not inside the import folders"):
        ws.import_source(str(extra / "set1"))
    monkeypatch.setenv("SEGCORE_IMPORT_ROOTS", str(extra))
    assert ws.import_source(str(extra / "set1")) == (extra / "set1").resolve()
    assert ws.import_source("set1") == (extra / "set1").resolve()
    monkeypatch.delenv("SEGCORE_IMPORT_ROOTS")
    write_json_atomic(ws.settings_path, {"import_roots": [str(extra)]})
    assert ws.import_roots() == [ws.incoming_dir.resolve(), extra.resolve()]


def test_cli_may_import_any_folder_its_user_names(hostile, tmp_path, capsys):
    ws, srv = hostile
    assert _cli_import(capsys, _paired(tmp_path / "in" / "anywhere"), "anywhere")["ok"]


# --------------------------------------------------------------------------- user text is never markup


def _evil_labelme_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for i, label in enumerate(EVIL_NAMES):
            zf.writestr(f"data/s{i}.png", _png(_image(40 + i)))
            zf.writestr(f"data/s{i}.json", _labelme(f"s{i}.png", label))
    return path


def test_class_names_are_never_rendered_as_markup_on_the_data_page(hostile, tmp_path, no_demo):
    ws, srv = hostile
    at = _data_page()
    report = _page_upload(at, _evil_labelme_zip(tmp_path / "evil.zip"), "evil")
    assert report["ok"] and set(EVIL_NAMES) <= set(report["classes"])
    at = _data_page()
    legends = [md.value for md in at.markdown if "not painted" in md.value]
    assert legends
    for body in legends:
        assert "&#60;img" in body and "<img" not in body
        assert "[click]" not in body and "![t]" not in body
    rendered = _page_text(at)
    for name in EVIL_NAMES:
        assert name not in rendered, f"{name!r} reached a Markdown element unescaped"


def test_plotly_labels_show_class_and_run_names_as_text():
    from segcore import visualize as viz

    df = viz.class_frequency_frame(["background", "<a href='https://evil.example'>x</a>"], [0.9, 0.1])
    fig = viz.class_frequency_figure(df)
    assert all("<a" not in str(x) for x in fig.data[0].x)
    curves = viz.curves_figure({"<b>run</b>": {"epoch": [1, 2], "loss": [1.0, 0.5]}}, "loss")
    assert all("<b>" not in t.name for t in curves.data)


def test_markdown_text_removes_every_kind_of_markup():
    from segcore.safetext import markdown_text

    for text in EVIL_NAMES + ("https://evil.example", "www.evil.example", "a@b.example", ":red[x]", "$x$", "`code`", "*em*"):
        out = markdown_text(text)
        for marker in ("<", "[", "`", "$", "*", "://", "www.", "@"):
            assert marker not in out, (text, out)
    assert markdown_text("fine_tune_after 5 (a.png): ok") == "fine_tune_after 5 (a.png): ok"


# --------------------------------------------------------------------------- file modes


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_files_and_folders_honour_the_umask_cli(hostile, tmp_path, capsys, umask_022):
    ws, srv = hostile
    assert _cli_import(capsys, _paired(tmp_path / "in" / "modes"), "modes")["ok"]
    root = ws.dataset_dir("modes")
    assert _mode(root) == 0o755 and _mode(root / "images") == 0o755
    assert _mode(root / "dataset.json") == 0o644
    assert {_mode(p) for p in root.rglob("*.png")} == {0o644}
    write_bytes_atomic(tmp_path / "ws" / "x.bin", b"1")
    assert _mode(tmp_path / "ws" / "x.bin") == 0o644
    assert _mode(make_temp_dir(ws.tmp_dir, "t-")) == 0o755
    from segcore.data.arrays import load_arrays

    load_arrays("modes", None, 16, workspace=ws)
    assert {_mode(p) for p in ws.root.rglob("*") if "cache" in str(p)} <= {0o644, 0o755}
    os.umask(0o077)
    write_bytes_atomic(tmp_path / "ws" / "private.bin", b"1")
    assert _mode(tmp_path / "ws" / "private.bin") == 0o600  # a stricter umask is honoured too


def test_files_imported_from_the_data_page_are_readable_by_the_group(hostile, tmp_path, no_demo, umask_022):
    ws, srv = hostile
    archive = _labelme_zip(tmp_path / "lm.zip", "a.png")
    at = _data_page()
    assert _page_upload(at, archive, "lm")["ok"]
    files = [p for p in ws.dataset_dir("lm").rglob("*")]
    assert files and all(_mode(p) in (0o644, 0o755) for p in files), {str(p): oct(_mode(p)) for p in files}


# --------------------------------------------------------------------------- the server's own configuration


def test_streamlit_config_binds_to_localhost_with_xsrf_on():
    config = tomllib.loads((PROJECT / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["address"] == "localhost"
    assert server["enableXsrfProtection"] is True
    assert server.get("enableCORS", True) is True
    assert config["browser"]["gatherUsageStats"] is False


def test_security_doc_is_linked_and_names_the_settings():
    doc = (PROJECT / "docs" / "security.md").read_text()
    assert "docs/security.md" in (PROJECT / "README.md").read_text()
    for word in ("SEGCORE_IMPORT_ROOTS", "server.json", "incoming/", "max_image_pixels", "st.login", "reverse proxy", "--server.address"):
        assert word in doc, word
    fields = [f for f in ("import_roots", "max_image_pixels", "max_archive_bytes", "max_archive_files", "import_workers")]
    assert all(f in doc for f in fields)


def test_dashboard_asks_for_a_login_when_auth_is_configured(hostile, no_demo):
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "segcore", "client_secret": "s", "server_metadata_url": "https://id.example/.well-known/openid-configuration",
    }
    at.run()
    assert not at.exception
    assert at.button(key="login").label == "Log in"
    assert "log in to use it" in at.info[0].value
    assert not at.title or at.title[0].value == "segcore"
    assert "Workspace:" not in "".join(c.value for c in at.caption)  # nothing else of the dashboard was shown
    # Without an [auth] section the dashboard opens directly, as on a single machine.
    open_at = AppTest.from_file(APP, default_timeout=60).run()
    assert not open_at.exception and not [b for b in open_at.button if b.key == "login"]


# --------------------------------------------------------------------------- hostile text on every page

# Names as a teammate, an import or a shared link may carry them: links, directives, tags, formulas.
HOSTILE_RUN = "[click here](https://evil.example) :red[BIG] <img src=x onerror=alert(1)>"
HOSTILE_FORMULA = '=HYPERLINK("https://evil.example/f","open") `x` $x$'
HOSTILE_CLASSES = ("background", "<img src=x onerror=alert(2)>", "[cell](https://evil.example/c) :red[c]", '=HYPERLINK("https://evil.example/h")')
HOSTILE_TEXT = "see [this](https://evil.example/n) :red[now] <a href='https://evil.example/a'>x</a> https://evil.example/bare"
# What must never reach an element that renders Markdown or HTML: a link target, a directive, a tag.
MARKUP_MARKERS = ("https://evil", "](", ":red[", "<img", "<a ")
# Proto fields Streamlit renders as Markdown: bodies, labels, help texts, image captions, plotly specs.
_MARKUP_FIELDS = ("body", "label", "help", "caption", "spec", "placeholder")
_PLAIN_ELEMENTS = ("Json", "Code", "Text")  # shown as the characters they hold


def _markup_texts(at) -> list[tuple[str, str]]:
    """(element type, text) of every field the browser renders as Markdown or HTML, across the whole page."""
    from google.protobuf.json_format import MessageToDict

    found: list[tuple[str, str]] = []

    def collect(kind: str, data) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                if key in _MARKUP_FIELDS and isinstance(value, str):
                    found.append((f"{kind}.{key}", value))
                elif key != "options":  # a selectbox's options are shown as plain text
                    collect(kind, value)
        elif isinstance(data, list):
            for item in data:
                collect(kind, item)

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and hasattr(proto, "DESCRIPTOR") and type(node).__name__ not in _PLAIN_ELEMENTS:
            collect(type(node).__name__, MessageToDict(proto))
        children = getattr(node, "children", None) or {}
        for child in children.values():
            walk(child)

    walk(at._tree)
    return found


def _hostile_workspace(ws) -> dict:
    """A dataset whose class names are hostile, and runs whose names, notes, tags, messages and warnings are."""
    import test_pages as tp
    from segcore.data.dataset import Problem

    files = tuple(f"masks/{HOSTILE_RUN} {i}.png" for i in range(4))
    tp.make_dataset(ws, "demo", problems=(Problem("jpeg_noise", HOSTILE_TEXT, files, "warning"),))
    record = json.loads((ws.dataset_dir("demo") / "dataset.json").read_text())
    for entry, name in zip(record["classes"], HOSTILE_CLASSES):
        entry["name"] = name
    (ws.dataset_dir("demo") / "dataset.json").write_text(json.dumps(record))
    report = tp.make_report([0.6, 0.7, 0.2])
    report["class_names"] = list(HOSTILE_CLASSES)
    for row, name in zip(report["per_class"], HOSTILE_CLASSES):
        row["name"] = name
    report["warnings"] = [f"class {HOSTILE_CLASSES[1]!r} is never predicted; {HOSTILE_TEXT}"]
    a = tp.make_run(ws, name=HOSTILE_RUN, evaluation=report)
    b = tp.make_run(ws, name=HOSTILE_FORMULA, evaluation=report)
    failed = tp.make_run(ws, state="failed", name=HOSTILE_TEXT, done=1)
    failed.update_status(message=f"ValueError: {HOSTILE_TEXT}", warnings=[HOSTILE_TEXT])
    for run in (a, b):
        run.write_notes(notes=HOSTILE_TEXT, tags=[HOSTILE_RUN, "=1+1"])
        tp.add_predictions(ws, run, 0.9)
    with zipfile.ZipFile(a.best_model_path.parent.mkdir(parents=True, exist_ok=True) or a.best_model_path, "w") as zf:
        for member in ("metadata.json", "config.json", "model.weights.h5"):
            zf.writestr(member, b"{}")
    return {"a": a, "b": b, "failed": failed}


def _assert_no_markup(at, page: str) -> None:
    assert not at.exception, (page, at.exception)
    for kind, text in _markup_texts(at):
        # plotly reads a few HTML tags in its labels, and no Markdown
        for marker in (("<a ", "<img", "<b>") if kind.endswith(".spec") else MARKUP_MARKERS):
            assert marker not in text, f"{page}: {kind} renders {marker!r} from user text: {text[:300]!r}"


def _downloads(at, media: dict) -> dict[str, bytes]:
    out = {}
    for node in at.get("download_button"):
        url = node.proto.url
        file_id = url.rsplit("/", 1)[-1].split(".")[0]
        if file_id in media:
            out[node.proto.label] = media[file_id]
    return out


def _assert_no_formula(name: str, data: bytes) -> None:
    import csv

    text = data.decode("utf-8")
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row] if name.endswith("(CSV)") or "CSV" in name else \
        [cell.strip() for line in text.splitlines() if set(line) - set("|-") for cell in line.strip("|").split(" | ")]
    for cell in cells:
        if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
            try:
                float(cell)
            except ValueError:
                raise AssertionError(f"{name}: cell {cell!r} would run as a spreadsheet formula") from None
    assert "https://evil" not in text or "CSV" in name, f"{name}: a live link in a Markdown export"


def test_every_page_shows_hostile_names_notes_tags_classes_and_links_as_text(workspace, no_demo, media):
    """Run names, notes, tags, class names, warnings, messages and a ``?run=`` link full of Markdown, HTML
    and formulas: no page renders any of it as a link, tag or directive, and no export holds a formula."""
    made = _hostile_workspace(workspace)
    a, b = made["a"], made["b"]
    at = AppTest.from_file(APP, default_timeout=90).run()
    _assert_no_markup(at, "home")
    at.switch_page("app_pages/data.py").run()
    for tab in ("Samples", "Class frequencies", "Problems (1)", "Augmentation", "Split"):
        at.session_state["data_tab"] = tab
        at.run()
        _assert_no_markup(at, f"data/{tab}")
    exports: dict[str, bytes] = {}
    for page, query in (("app_pages/data.py", {"dataset": HOSTILE_RUN}), ("app_pages/train.py", {"dataset": HOSTILE_RUN}),
                        ("app_pages/runs.py", {"run": HOSTILE_RUN}), ("app_pages/runs.py", {"run": a.run_id}),
                        ("app_pages/compare.py", {"run": a.run_id}), ("app_pages/compare.py", {"run": HOSTILE_RUN}),
                        ("app_pages/predict.py", {"run": HOSTILE_RUN}), ("app_pages/predict.py", {"run": a.run_id})):
        at.switch_page(page)
        at.query_params.clear()
        at.query_params.update(query)
        at.run()
        _assert_no_markup(at, f"{page}?{query}")
        exports.update(_downloads(at, media))
    # the runs page: the hostile runs' own view (notes, tags, warnings, messages) and the results table
    for run in (a, made["failed"]):
        at.switch_page("app_pages/runs.py").run()
        at.selectbox(key="run_detail").set_value(run.run_id).run()
        _assert_no_markup(at, f"runs/{run.run_id}")
        exports.update(_downloads(at, media))
    # the compare page with both hostile runs side by side
    at.switch_page("app_pages/compare.py").run()
    at.multiselect(key="cmp_runs").set_value([a.run_id, b.run_id]).run()
    _assert_no_markup(at, "compare a+b")
    exports.update(_downloads(at, media))
    at.segmented_control(key="cmp_pick_mode").set_value("Worst for each model").run()  # captions name the runs
    _assert_no_markup(at, "compare worst")
    assert any(kind.endswith(".caption") and "worst for" in text for kind, text in _markup_texts(at)), sorted({k for k, _ in _markup_texts(at)})
    tables = {k: v for k, v in exports.items() if "CSV" in k or "Markdown" in k}
    assert any("compare" in k.lower() or "table" in k.lower() for k in tables), sorted(exports)
    assert any("Markdown" in k for k in tables), sorted(exports)
    for name, data in tables.items():
        _assert_no_formula(name, data)
    assert any(b"'=HYPERLINK" in data for data in tables.values())


def test_exports_neutralise_formulas_and_markup_and_keep_numbers():
    """OWASP's formula characters (= + - @ tab CR) at the start of a text cell get a leading quote, in CSV
    and Markdown exports alike, in cells, row labels and column labels; numbers (negative too) stay numbers."""
    import csv

    import pandas as pd

    from segcore import visualize as viz
    from segcore.safetext import csv_bytes

    starts = ["=HYPERLINK(\"https://evil.example\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    df = pd.DataFrame({"dice": [-0.25] + [0.5] * 5, "note": starts}, index=pd.Index(starts, name="=run"))
    df["=col"] = "fine"
    rows = list(csv.reader(io.StringIO(csv_bytes(df, index_label="=run").decode("utf-8"), newline="")))
    assert rows[0] == ["'=run", "dice", "note", "'=col"]
    assert [r[0] for r in rows[1:]] == ["'" + s for s in starts] and [r[2] for r in rows[1:]] == ["'" + s for s in starts]
    assert rows[1][1] == "-0.25"  # a number, not text: left as it is
    md = viz.table_markdown(df.head(1).rename(index={starts[0]: HOSTILE_RUN}))
    assert "'=HYPERLINK" in md and "| =" not in md
    for marker in ("](", ":red[", "<img", "https://"):
        assert marker not in md


# --------------------------------------------------------------------------- a damaged server.json

DAMAGED_SERVER_JSON = {
    "invalid": b'{"import_roots": [', "binary": b"\xff\xfe\x00", "list": b"[1, 2]", "null": b"null",
    "string-roots": b'{"import_roots": "/data"}', "number-roots": b'{"import_roots": [1]}', "typo": b'{"max_pixel": 5}',
}


@pytest.mark.parametrize("kind", list(DAMAGED_SERVER_JSON))
def test_a_damaged_server_json_is_one_message_on_the_data_page_and_in_the_cli(hostile, tmp_path, capsys, no_demo, kind):
    """Whatever server.json holds, the Data page's server-folder panel says what is wrong with the file in one
    message (no traceback, no folder field), and the CLI import says so in one JSON error."""
    ws, srv = hostile
    ws.settings_path.write_bytes(DAMAGED_SERVER_JSON[kind])
    with pytest.raises(ValueError, match="server.json"):
        ws.import_roots()
    at = _data_page()
    at.radio(key="import_source").set_value("A folder on the server").run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "Importing from server folders is unavailable" in errors[0] and "server.json" in errors[0], errors
    assert not [t for t in at.text_input if t.key == "import_folder"]
    rc = main(["import", str(_paired(tmp_path / "in" / "pairs")), "--name", "pairs", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and "server.json" in out["error"] and "Traceback" not in out["error"]


def test_import_roots_given_as_one_string_are_refused_not_read_as_letters(workspace):
    """``"import_roots": "/data"`` once became the roots '/', 'd', 'a', 't': every folder of the server."""
    workspace.settings_path.write_text('{"import_roots": "/data"}')
    with pytest.raises(ValueError, match="import_roots is '/data'; expected a list of folder paths"):
        workspace.settings()
    workspace.settings_path.write_text('{"import_roots": ["/data"]}')
    assert workspace.settings().import_roots == ("/data",)
    assert Path("/") not in workspace.import_roots()
