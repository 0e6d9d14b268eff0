"""Bad input gets a clear error, loses nothing, and writes nothing outside the workspace."""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcore.data import imageio
from segcore.data.archive import UnsafeArchiveError, extract_zip
from segcore.data.dataset import list_datasets, load_dataset
from segcore.data.imports import import_dataset
from segcore.fsutil import write_json_atomic


def _png(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _paired_zip(path: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> Path:
    m = np.zeros((8, 8), np.uint8)
    m[2:6, 2:6] = 255
    with zipfile.ZipFile(path, "w") as zf:
        for stem in ("a", "b"):
            zf.writestr(f"images/{stem}.png", _png(np.full((8, 8), 100, np.uint8)))
            zf.writestr(f"masks/{stem}.png", _png(m))
        for info, data in extra:
            zf.writestr(info, data)
    return path


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def guarded(tmp_path, workspace):
    """The workspace plus a check that nothing appeared beside it."""
    outside = tmp_path
    before = _snapshot(outside)
    yield workspace
    # The test's own inputs (src/, *.zip) are expected; anything else beside ws/ is a leak.
    after = {p for p in _snapshot(outside) if not p.startswith(("ws", "src")) and not p.endswith(".zip")}
    new = after - before
    assert not new, f"files written outside the workspace: {sorted(new)}"
    assert list(workspace.tmp_dir.iterdir()) == [], "scratch files left behind"


@pytest.mark.parametrize(
    "member, expected",
    [("../evil.png", "'..'"), ("images/../../evil.png", "'..'"), ("/tmp/evil.png", "absolute path")],
)
def test_zip_with_escaping_paths_is_refused(tmp_path, guarded, member, expected):
    archive = _paired_zip(tmp_path / "bad.zip", [(member, b"x")])
    report = import_dataset(archive, "escape", workspace=guarded)
    assert not report.ok
    assert expected in report.error and repr(member) in report.error
    assert list_datasets(guarded) == []
    assert not (tmp_path / "evil.png").exists() and not Path("/tmp/evil.png").exists()


def test_zip_with_symlink_is_refused(tmp_path, guarded):
    link = zipfile.ZipInfo("images/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _paired_zip(tmp_path / "link.zip", [(link, b"/etc/passwd")])
    report = import_dataset(archive, "links", workspace=guarded)
    assert not report.ok and "symbolic link" in report.error and "images/link.png" in report.error


def test_zip_bomb_size_is_refused(tmp_path, guarded):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/a.png", b"\0" * (8 * 1024 * 1024))  # 8 MiB of zeros, a few KiB compressed
    assert archive.stat().st_size < 64 * 1024
    write_json_atomic(guarded.settings_path, {"max_archive_bytes": 1024 * 1024})  # a server setting
    report = import_dataset(archive, "bomb", workspace=guarded)
    assert not report.ok and "zip bomb" in report.error and "1,048,576" in report.error


def test_zip_bomb_lying_directory_is_caught_while_extracting(tmp_path, guarded):
    # The central directory claims 10 bytes; the stream holds 2 MiB.
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images/a.png", b"\0" * (2 * 1024 * 1024))
    data = bytearray(archive.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 10)  # uncompressed size in the central directory
    archive.write_bytes(bytes(data))
    with pytest.raises((UnsafeArchiveError, ValueError)):
        extract_zip(archive, guarded.tmp_dir, max_bytes=1024 * 1024)
    assert list(guarded.tmp_dir.iterdir()) == []


def test_zip_with_too_many_files_is_refused(tmp_path, guarded):
    archive = _paired_zip(tmp_path / "many.zip", [(f"junk/{i}.txt", b"") for i in range(20)])
    write_json_atomic(guarded.settings_path, {"max_archive_files": 10})
    report = import_dataset(archive, "many", workspace=guarded)
    assert not report.ok and "more than 10 files" in report.error


def test_empty_archive(tmp_path, guarded):
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("just-a-folder/", b"")
    report = import_dataset(archive, "empty", workspace=guarded)
    assert not report.ok and "empty" in report.error and "empty.zip" in report.error


def test_not_a_zip(tmp_path, guarded):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"this is not an archive")
    report = import_dataset(fake, "fake", workspace=guarded)
    assert not report.ok and "not a zip archive" in report.error


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def test_image_bomb_refused_from_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_bomb_png(100_000, 100_000))
    assert bomb.stat().st_size < 1000
    with pytest.raises(imageio.ImageReadError, match=r"100000x100000 = 10,000,000,000 pixels.*cap"):
        imageio.read_image(bomb)


def test_image_bomb_in_dataset_is_skipped_and_named(tmp_path, guarded):
    archive = _paired_zip(tmp_path / "d.zip", [("images/c.png", _bomb_png(50_000, 50_000)), ("masks/c.png", _png(np.zeros((8, 8), np.uint8)))])
    report = import_dataset(archive, "withbomb", workspace=guarded)
    assert report.ok and len(report.dataset.samples) == 2
    bad = [p for p in report.problems if p.kind == "unreadable"]
    assert bad and "images/c.png" in bad[0].message and "cap" in bad[0].message
    strict = import_dataset(archive, "withbomb-strict", strict=True, workspace=guarded)
    assert not strict.ok and "strict" in strict.error
    assert [d.name for d in list_datasets(guarded)] == ["withbomb"]


def test_non_image_renamed_png(tmp_path, guarded):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for stem in ("a", "b"):
        (src / "images" / f"{stem}.png").write_bytes(_png(np.full((8, 8), 50, np.uint8)))
        (src / "masks" / f"{stem}.png").write_bytes(_png(np.zeros((8, 8), np.uint8)))
    (src / "images" / "b.png").write_text("%PDF-1.4 not really an image")
    report = import_dataset(src, "renamed", workspace=guarded)
    assert report.ok and [s.id for s in report.dataset.samples] == ["a"]
    p = [p for p in report.problems if p.kind == "unreadable"][0]
    assert "b.png" in p.message and "is not an image" in p.message and p.severity == "error"


def test_all_files_unreadable_fails_cleanly(tmp_path, guarded):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    (src / "images" / "a.png").write_text("junk")
    (src / "masks" / "a.png").write_text("junk")
    report = import_dataset(src, "junk", workspace=guarded)
    assert not report.ok and "could be imported" in report.error and "a.png" in report.error
    assert not guarded.dataset_dir("junk").exists()


@pytest.mark.parametrize("name", ["../up", "a/b", "..", "", ".hidden", "x" * 65, "a..b"])
def test_bad_dataset_names(tmp_path, workspace, name):
    archive = _paired_zip(tmp_path / "d.zip")
    with pytest.raises(ValueError, match="dataset name"):
        import_dataset(archive, name, workspace=workspace)
    assert list(workspace.datasets_dir.iterdir()) == []


def test_duplicate_name_refused_or_versioned(tmp_path, guarded):
    archive = _paired_zip(tmp_path / "d.zip")
    first = import_dataset(archive, "dup", workspace=guarded)
    assert first.ok
    stamp = (guarded.dataset_dir("dup") / "dataset.json").read_bytes()
    with pytest.raises(FileExistsError, match="'dup' already exists"):
        import_dataset(archive, "dup", workspace=guarded)
    assert (guarded.dataset_dir("dup") / "dataset.json").read_bytes() == stamp  # untouched
    second = import_dataset(archive, "dup", on_exists="version", workspace=guarded)
    third = import_dataset(archive, "dup", on_exists="version", workspace=guarded)
    assert (second.name, third.name) == ("dup-2", "dup-3")
    assert load_dataset("dup-2", guarded).info.content_hash == first.dataset.content_hash


def test_missing_source_and_unknown_layout(tmp_path, workspace):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        import_dataset(tmp_path / "nowhere", "x", workspace=workspace)
    with pytest.raises(ValueError, match="layout 'weird' is not known"):
        import_dataset(tmp_path, "x", layout="weird", workspace=workspace)


def test_undetectable_layout_says_what_to_do(tmp_path, workspace):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.md").write_text("hello")
    report = import_dataset(tmp_path / "stuff", "x", workspace=workspace)
    assert not report.ok and "cannot tell the layout" in report.error and "layout=" in report.error
