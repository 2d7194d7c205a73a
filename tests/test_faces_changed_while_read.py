"""Organiser crops and OpenFace CSVs changed while `features` reads them (pipeline/faces.changed_while_read).

A crop copied into the folder, or a CSV rewritten in place, after the extraction began gave the group faces of the new
input under the identity of the old one (recorded when it began): the group was done, and with the old input put back
a rerun found it matching and kept it. The input is identified again after the faces are read, as the video file is
(tests/test_source_identity.py). A real Aff-Wild2 layout (OpenCV video, crops, a CSV written from dlib's tracking), a
real Zarr cache and the per-video extraction the `features` workers run, changing the input after the first block.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from affwild2_layout import build_affwild2_layout, default_specs

from pipeline import extract, store
from pipeline.extract import Settings
from pipeline.manifest import get_dataset, list_videos


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """One single-person Aff-Wild2 entry of 60 frames: its video, crops and OpenFace CSV."""
    return build_affwild2_layout(tmp_path_factory.mktemp("changed_while_read"), specs=default_specs()[:1])


def _settings(layout, faces: str) -> Settings:
    where = layout.crops_dir if faces == "cropped_aligned" else layout.openface_dir
    return Settings(stages=("align",), weights="random", faces=faces, faces_dir=str(where), chunk_frames=32,
                    label_slack=1)


def _input(layout, faces: str, entry: str) -> Path:
    return layout.crops_dir / entry if faces == "cropped_aligned" else layout.openface_dir / f"{entry}.csv"


def _change(layout, faces: str, entry: str) -> None:
    """What a copy landing on the input does: a later crop replaced by another one (another size), or a later frame's
    success flag set to 0 in the CSV (the same size: only the contents say it changed)."""
    if faces == "cropped_aligned":
        names = sorted((layout.crops_dir / entry).glob("*.jpg"))
        assert names[5].stat().st_size != names[-1].stat().st_size   # a crop folder is identified by names and sizes
        shutil.copyfile(names[5], names[-1])
    else:
        csv = layout.openface_dir / f"{entry}.csv"
        lines = csv.read_text().split("\n")
        edited = lines[56].replace(", 0.98, 1, ", ", 0.98, 0, ", 1)   # frame 55: no face now
        assert edited != lines[56]
        lines[56] = edited
        csv.write_text("\n".join(lines))


@pytest.mark.parametrize("faces,what", [("cropped_aligned", "crop folder"), ("openface", "file")])
def test_a_face_input_changed_while_read_fails_and_caches_nothing_of_either(layout, tmp_path, faces, what):
    entry = next(e for e in list_videos(get_dataset("affwild2", root=layout.root)))
    s = _settings(layout, faces)
    where = _input(layout, faces, entry.video)
    kept = tmp_path / "kept"
    (shutil.copytree if where.is_dir() else shutil.copyfile)(where, kept)
    row = extract.process_video(str(tmp_path / "ref"), "affwild2", entry, s)
    assert row["status"] == "done", row
    blocks = []

    def change_after_the_first_block(n: int) -> None:
        blocks.append(n)
        if len(blocks) == 1:
            _change(layout, faces, entry.video)

    cache = tmp_path / "cache"
    row = extract.process_video(str(cache), "affwild2", entry, s, report=change_after_the_first_block)
    assert len(blocks) == 2 and sum(blocks) == layout.entries[entry.video].n_frames   # read from both
    assert row["status"] == "failed", row
    assert row["error"].startswith(f"{where}: the {what} changed while its faces were read"), row["error"]
    assert "run the command again once nothing writes to it" in row["error"]
    assert store.group_status(cache, "affwild2", entry.video) is None   # nothing of the mixed faces is kept

    if where.is_dir():                                    # the old input put back: extracted from it alone
        shutil.rmtree(where)
        shutil.copytree(kept, where)
    else:
        shutil.copyfile(kept, where)
    row = extract.process_video(str(cache), "affwild2", entry, s)
    assert row["status"] == "done" and row["action"] == "full", row
    for name in ("valid", "face48"):
        np.testing.assert_array_equal(store.open_video(cache, "affwild2", entry.video)[name][:],
                                      store.open_video(tmp_path / "ref", "affwild2", entry.video)[name][:])
