"""The upload-import service (segcore.data.uploads), the problems table, and the helpers the import shares.

Every upload is made by the test: a few small PNGs, loose or in a zip.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from segcore import visualize as viz
from segcore.data import layouts, uploads
from segcore.data.archive import UnsafeArchiveError, relative_path
from segcore.data.dataset import Problem, list_datasets
from segcore.data.imports import ImportReport, import_dataset
from segcore.data.uploads import ImportProgress, UploadedFile, import_upload
from segcore.fsutil import write_json_atomic


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _pairs(n: int = 3) -> dict[str, bytes]:
    """images/ + masks/ of a small binary dataset, by relative name."""
    files = {}
    for i in range(n):
        image = np.full((16, 16), 40 + i, np.uint8)
        mask = np.zeros((16, 16), np.uint8)
        mask[4:12, 4:12] = 255
        files[f"images/c{i}.png"] = _png(image)
        files[f"masks/c{i}.png"] = _png(mask)
    return files


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"cells/{name}", data)
    return buf.getvalue()


def _leftovers(ws) -> list[Path]:
    return sorted(ws.tmp_dir.glob("upload-*")) if ws.tmp_dir.exists() else []


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --------------------------------------------------------------------------- progress


def test_progress_record_fraction_is_clamped_and_zero_while_the_total_is_unknown():
    assert ImportProgress(0, 0, "extracting cells.zip").fraction == 0.0
    assert ImportProgress(3, 4, "read 3/4 samples").fraction == 0.75
    assert ImportProgress(9, 4, "").fraction == 1.0
    assert ImportProgress(-1, 4, "").fraction == 0.0


def test_progress_records_turn_the_importers_calls_into_one_record():
    seen: list[ImportProgress] = []
    callback = uploads.progress_records(seen.append)
    callback(2, 5, "read 2/5 samples")
    assert seen == [ImportProgress(2, 5, "read 2/5 samples")]
    uploads.progress_records(None)(1, 2, "nobody listens")  # no callback: nothing happens


# --------------------------------------------------------------------------- the service


def test_zip_upload_is_imported_with_progress_and_removed(workspace):
    seen: list[ImportProgress] = []
    report = import_upload([UploadedFile("cells.zip", _zip(_pairs(3)))], "cells", workspace=workspace, progress=seen.append)
    assert isinstance(report, ImportReport) and report.ok, report.error
    assert report.dataset.name == "cells" and len(report.dataset.samples) == 3
    assert report.details["archive"] == "cells.zip"
    assert not _leftovers(workspace)  # the saved zip is gone
    assert all(isinstance(p, ImportProgress) for p in seen)
    assert seen[0].message == "saving cells.zip" and seen[1].message == "extracting cells.zip"
    assert seen[-1] == ImportProgress(3, 3, "imported 3 samples as 'cells'")


def test_loose_files_keep_their_folders_and_are_removed(workspace):
    files = [UploadedFile(name, data) for name, data in _pairs(2).items()]
    seen: list[ImportProgress] = []
    report = import_upload(files, "loose", workspace=workspace, options={"invert": False}, progress=seen.append)
    assert report.ok, report.error
    assert report.layout == "paired" and len(report.dataset.samples) == 2
    assert seen[0].message == "saving 4 uploaded files"
    assert not _leftovers(workspace)


def test_memoryview_bytes_are_accepted(workspace):
    data = _zip(_pairs(2))
    report = import_upload([UploadedFile("c.zip", memoryview(data))], "mv", workspace=workspace)
    assert report.ok and not _leftovers(workspace)


def test_a_failed_import_still_removes_the_upload(workspace):
    report = import_upload([UploadedFile("broken.zip", b"this is not a zip")], "broken", workspace=workspace)
    assert not report.ok and "is not a zip archive" in report.error
    assert not _leftovers(workspace) and not list_datasets(workspace)


def test_an_error_raised_by_the_import_still_removes_the_upload(workspace):
    assert import_upload([UploadedFile("cells.zip", _zip(_pairs(2)))], "cells", workspace=workspace).ok
    with pytest.raises(FileExistsError, match="already exists"):
        import_upload([UploadedFile("cells.zip", _zip(_pairs(2)))], "cells", workspace=workspace)
    assert not _leftovers(workspace)


def test_a_write_that_fails_midway_removes_the_upload(workspace, monkeypatch):
    calls = []

    def failing_write(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(bytes(data))

    monkeypatch.setattr(uploads, "write_bytes_atomic", failing_write)
    files = [UploadedFile(name, data) for name, data in _pairs(2).items()]
    with pytest.raises(OSError, match="No space left"):
        import_upload(files, "full", workspace=workspace)
    assert len(calls) == 2 and not _leftovers(workspace) and not list_datasets(workspace)


@pytest.mark.parametrize(
    "hostile",
    ["../../evil.png", "images/../../../evil.png", "/tmp/evil.png", "\\\\server\\share\\evil.png", "C:\\evil.png", "..\\..\\evil.png"],
)
def test_a_hostile_file_name_cannot_write_outside_the_workspace(workspace, tmp_path, hostile):
    workspace.ensure()
    before = _tree(tmp_path)
    files = [UploadedFile(name, data) for name, data in _pairs(1).items()] + [UploadedFile(hostile, b"evil")]
    with pytest.raises(UnsafeArchiveError, match="refusing the upload"):
        import_upload(files, "evil", workspace=workspace)
    assert _tree(tmp_path) == before  # nothing written anywhere, the workspace included
    assert not Path("/tmp/evil.png").exists() or Path("/tmp/evil.png").read_bytes() != b"evil"


def test_odd_characters_in_upload_names_are_replaced_inside_the_upload_folder():
    paths = uploads.upload_paths(["images/<img src=x>.png", "masks/a b;rm -rf.png", "./c.zip", "x" * 200 + ".png"])
    assert paths[0] == PurePosixPath("images/_img_src_x_.png")
    assert paths[1] == PurePosixPath("masks/a_b_rm_-rf.png")
    assert paths[2] == PurePosixPath("c.zip")
    assert len(paths[3].name) == 80 and paths[3].suffix == ".png"


def test_names_that_collide_or_are_empty_are_refused():
    with pytest.raises(ValueError, match="both be saved as 'a_b.png'"):
        uploads.upload_paths(["a b.png", "a;b.png"])
    with pytest.raises(ValueError, match="no file name"):
        uploads.upload_paths(["./"])
    with pytest.raises(ValueError, match="nothing was uploaded"):
        uploads.upload_paths([])


def test_loose_files_are_held_to_the_server_archive_limits(workspace):
    files = [UploadedFile(name, data) for name, data in _pairs(2).items()]
    write_json_atomic(workspace.settings_path, {"max_archive_files": 3})
    with pytest.raises(UnsafeArchiveError, match="more than 3 files"):
        import_upload(files, "many", workspace=workspace)
    write_json_atomic(workspace.settings_path, {"max_archive_bytes": 100})
    with pytest.raises(UnsafeArchiveError, match="more than 100 bytes"):
        import_upload(files, "big", workspace=workspace)
    assert not _leftovers(workspace) and not list_datasets(workspace)


def test_a_zip_upload_is_held_to_the_archive_limits_as_it_is_extracted(workspace):
    write_json_atomic(workspace.settings_path, {"max_archive_files": 3})
    report = import_upload([UploadedFile("cells.zip", _zip(_pairs(3)))], "bomb", workspace=workspace)
    assert not report.ok and "more than 3 files" in report.error
    assert not _leftovers(workspace)


def test_suggest_name_from_a_file_name():
    assert uploads.suggest_name("cells.zip") == "cells"
    assert uploads.suggest_name("My data (v2).zip") == "My_data__v2_"
    assert uploads.suggest_name("._hidden.zip") == "hidden"
    assert uploads.suggest_name("") == ""
    assert len(uploads.suggest_name("y" * 100 + ".zip")) == 64


# --------------------------------------------------------------------------- shared helpers


def test_relative_path_refuses_absolute_and_climbing_names_with_the_given_words():
    assert relative_path("a/b\\c.png", what="x", refusing="it") == PurePosixPath("a/b/c.png")
    with pytest.raises(UnsafeArchiveError, match=r"cells.zip member '/etc/passwd' has an absolute path; refusing the archive"):
        relative_path("/etc/passwd", what="cells.zip member", refusing="the archive")
    with pytest.raises(UnsafeArchiveError, match=r"uploaded file 'a/../../b' contains '..'; refusing the upload"):
        relative_path("a/../../b", what="uploaded file", refusing="the upload")


def test_relative_name_is_relative_to_the_root_or_the_whole_path(tmp_path):
    assert layouts.relative_name(tmp_path / "images" / "a.png", tmp_path) == "images/a.png"
    assert layouts.relative_name(tmp_path, tmp_path) == "."
    assert layouts.relative_name(Path("/elsewhere/a.png"), tmp_path) == "/elsewhere/a.png"


def test_problems_frame_reads_problem_records_the_same_from_a_report_and_from_its_dict(workspace, tmp_path):
    src = tmp_path / "src"
    for name, data in _pairs(4).items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    for i in range(5):
        (src / "images" / f"lonely{i}.png").write_bytes(_png(np.zeros((16, 16), np.uint8)))
    report = import_dataset(src, "cells", workspace=workspace)
    assert report.ok and report.problems
    frame = viz.problems_frame(report.problems)
    again = viz.problems_frame([Problem.from_dict(p) for p in report.to_dict()["problems"]])
    assert frame.equals(again)
    assert list(frame.columns) == viz.PROBLEM_COLUMNS
    unpaired = frame[frame["kind"] == "unpaired_image"].iloc[0]
    assert unpaired["files"] == "5" and unpaired["which"].endswith("and 2 more")
    whole = viz.problems_frame([Problem("empty_class", "classes ['x'] have no pixels", (), "warning")]).iloc[0]
    assert whole["files"] == "–" and whole["which"] == "the dataset as a whole"
    assert viz.problems_frame([]).empty


def test_an_uploaded_text_file_is_short_utf8_text_or_a_message_naming_it():
    from segcore.data.uploads import UploadedFile, upload_text

    assert upload_text(UploadedFile("classes.txt", "sky\nroad\n".encode()), "class list") == "sky\nroad\n"
    with pytest.raises(ValueError, match=r"the uploaded class list 'big.txt' is larger than 1 MiB"):
        upload_text(UploadedFile("big.txt", b"a" * (1024**2 + 1)), "class list")
    with pytest.raises(ValueError, match=r"the uploaded colour table 'c.csv' is not UTF-8 text"):
        upload_text(UploadedFile("c.csv", b"\xff\xfe\x00bad"), "colour table")
