"""ABAW test entries extracted from the organisers' crops (the manifest's test_list) and predicted as the challenge
takes them, on a real Aff-Wild2 layout (tests/affwild2_layout.py: real videos, real crop JPEGs), the real `features`
and `predict` commands and a real Zarr cache.

Two test entries copy the 60-frame video `1-30-176x144` and its crops: `9-30-176x144`, whose crop folder goes two
frames past the video's container (00061.jpg, 00062.jpg: the organisers count 62 frames), and `3-30-176x144`, whose
folder stops at 00028.jpg (a partly unpacked archive).
"""
from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from affwild2_layout import build_affwild2_layout
from click.testing import CliRunner

from cli import main
from pipeline import info, store
from train.evaluate import fill_nearest
from train.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "1-30-176x144"     # 60 frames, labelled (Train_Set)
PAST = "9-30-176x144"       # crops 00061.jpg, 00062.jpg past its 60 frames
CUT = "3-30-176x144"        # crops 00029.jpg ... deleted
TINY = {"width": 4, "window": 4, "length": 32, "stride": 16, "batch_size": 4, "folds": 2, "lr": 0.1,
        "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False, "epochs": 1}


def manifest_with_test_list(path: Path) -> Path:
    path.write_text((ROOT / "data_manifest.yaml").read_text().replace("# test_list:", "test_list:"))
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The layout, its two test entries and test_set.txt; MIMAMO_MANIFEST names a manifest with test_list."""
    base = tmp_path_factory.mktemp("abaw_test")
    layout = build_affwild2_layout(base / "root", openface=False)
    src = layout.entries[SOURCE]
    assert src.n_frames == 60
    for name in (PAST, CUT):
        shutil.copyfile(src.video_path, layout.videos_dir / f"{name}.mp4")
        shutil.copytree(src.crop_dir, layout.crops_dir / name)
    last = max(src.crop_dir.glob("*.jpg"))
    for k in (61, 62):
        shutil.copyfile(last, layout.crops_dir / PAST / f"{k:05d}.jpg")
    for crop in (layout.crops_dir / CUT).glob("*.jpg"):
        if int(crop.stem) > 28:
            crop.unlink()
    (layout.root / "test_set.txt").write_text(f"{PAST}.mp4\n{CUT}\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("MIMAMO_MANIFEST", str(manifest_with_test_list(base / "manifest.yaml")))
    yield layout
    mp.undo()


@pytest.fixture(scope="module")
def extracted(root):
    """`features --faces cropped_aligned` on the whole root (as QA ran it): (its output, the cache)."""
    cache = root.root.parent / "zarr"
    r = CliRunner().invoke(main, ["features", "--dataset", "affwild2", "--root", str(root.root), "--cache",
                                  str(cache), "--faces", "cropped_aligned", "--weights", "random", "--stages",
                                  "align,motion", "--label-slack", "2", "--workers", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    return r.output, cache


@pytest.fixture(scope="module")
def model(extracted):
    cache = extracted[1]
    cfg = TrainConfig(cache=str(cache), out=str(cache.parent / "run"), dataset="affwild2", streams="temporal", **TINY)
    train(cfg)
    return f"{cfg.out}/best.pt"


def test_a_test_entrys_abaw_file_has_a_line_per_organiser_crop(extracted, model, tmp_path):
    """ABAW scores a line per frame as the organisers count them; crops numbered past the container's 60 frames
    prove they count 62, so the file has 62 lines (the last two repeat frame 60's prediction) and says why."""
    _, cache = extracted
    rows = store.read_index(cache, "affwild2").set_index("video")
    assert rows.loc[PAST, "split"] == "test" and rows.loc[PAST, "n_frames"] == 60
    assert rows.loc[PAST, "faces_frame_diff"] == 2
    args = ["predict", "--cache", str(cache), "--dataset", "affwild2", "--split", "test", "--checkpoint", model]
    r = CliRunner().invoke(main, [*args, "--format", "abaw", "--out", str(tmp_path / "sub")])
    assert r.exit_code == 0, r.output
    r_csv = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "csv")])
    assert r_csv.exit_code == 0, r_csv.output

    lines = (tmp_path / "sub" / f"{PAST}.txt").read_text().splitlines()
    assert lines[0] == "valence,arousal" and len(lines) == 1 + 62
    assert lines[61] == lines[62] == lines[60]   # frames 61 and 62: frame 60's prediction again
    per_frame = pd.read_csv(tmp_path / "csv" / f"{PAST}.csv")
    want = fill_nearest(per_frame[["arousal", "valence"]].to_numpy(), per_frame.valid.to_numpy()).clip(-1, 1)
    got = pd.read_csv(tmp_path / "sub" / f"{PAST}.txt")[["arousal", "valence"]].to_numpy()
    np.testing.assert_allclose(got[:60], want, atol=2e-5)
    # crops that stop early say nothing of the count (frames after the last face leave no file): 60 lines
    assert len((tmp_path / "sub" / f"{CUT}.txt").read_text().splitlines()) == 1 + 60

    note = ("62 lines, to its last organiser crop (00062.jpg); the video's container says 60 frames; the lines past "
            "its last frame repeat its last prediction")
    assert json.loads((tmp_path / "sub" / "predict.json").read_text())["notes"] == {PAST: note}
    assert f"note: {PAST}: {note}" in r.output


def test_a_crop_folder_cut_short_is_noted(root, extracted):
    """Crops 00029-00060 gone: the video is kept (the person may have left), but features, the index and info say
    where its crops stop; folders whose crops stop a few frames before the end are not noted."""
    output, cache = extracted
    last = max(int(p.stem) for p in (root.crops_dir / CUT).glob("*.jpg"))
    assert 20 < last <= 28   # frames 21-27 of the source have no face
    note = (f"its organiser crops stop at frame {last} of 60 (the video's container says 60): the crop folder may be "
            "incomplete (a partly unpacked archive: unpack it again), or the person is not shown after that frame")
    rows = store.read_index(cache, "affwild2").set_index("video")
    assert rows.loc[CUT, "status"] == "done" and rows.loc[CUT, "n_valid"] <= last
    assert rows.loc[CUT, "note"] == note
    assert note in output.split(CUT, 1)[1].splitlines()[0]   # its line of the features table
    assert f"note {CUT}: {note}" in info.describe(cache)
    assert rows.note.notna().sum() == 1   # 2-24-176x144's last 6 of 48 frames have no face: not a cut folder


def test_crop_runs_say_what_they_read_and_where_frame_counts_came_from(root, extracted, model, tmp_path):
    """Nothing is decoded from crops: the summary gives frames/s from the crops, not "0.0 frames/s decoded". The
    notes of predict --sample, and the mismatch of a label file changed after extraction (read alone: its group's
    frames stay), say where the 60 came from, the video's container, not "the video decodes to"."""
    output, cache = extracted
    assert "frames/s from organiser crops (none decoded)" in output and "frames/s decoded" not in output
    sample = tmp_path / "sample.txt"
    sample.write_text("image_location,valence,arousal\n" + "".join(f"{PAST}/{k:05d}.jpg,0,0\n" for k in range(1, 63)))
    r = CliRunner().invoke(main, ["predict", "--cache", str(cache), "--dataset", "affwild2", "--split", "test",
                                  "--checkpoint", model, "--format", "abaw", "--sample", str(sample), "--out",
                                  str(tmp_path / "sub")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "sub" / "predict.json").read_text())["notes"] == {
        PAST: "62 rows in the sample (frames up to 62); the video's container says 60 frames; the rows past its last "
              "frame repeat its last prediction"}
    copy, cache_copy = tmp_path / "root", tmp_path / "zarr"
    shutil.copytree(root.root, copy)
    shutil.copytree(cache, cache_copy)
    label = copy / "annotations" / "VA_Set" / "Train_Set" / f"{SOURCE}.txt"
    label.write_text("valence,arousal\n" + "0.1,0.2\n" * 65)
    r = CliRunner().invoke(main, ["features", "--dataset", "affwild2", "--root", str(copy), "--cache", str(cache_copy),
                                  "--faces", "cropped_aligned", "--weights", "random", "--stages", "align,motion",
                                  "--label-slack", "2", "--workers", "1", "--no-progress"])
    assert r.exit_code != 0 and f"({SOURCE}): recompute labels" in r.output   # labels alone, the frames kept
    assert f"failed: {label}: label count mismatch: 65 label lines but the video's container says 60 frames" in r.output
    assert "0.0 frames/s from organiser crops (none decoded)" in r.output   # nothing read: still not "decoded"


def test_a_test_entry_the_list_gained_after_features_is_named_not_left_out(root, model, tmp_path):
    """The organisers' list gains an entry after `features` ran (a corrected list): one file per entry would lack
    it without a word. predict names it, with the list's line and the `features` command that extracts it, and
    exits 1; that command extracts it, and predict then writes its file."""
    copy, cache_copy = tmp_path / "root", tmp_path / "zarr"   # a root and cache of their own, extracted as QA did
    shutil.copytree(root.root, copy)
    r = CliRunner().invoke(main, ["features", "--dataset", "affwild2", "--root", str(copy), "--cache", str(cache_copy),
                                  "--faces", "cropped_aligned", "--weights", "random", "--stages", "align,motion",
                                  "--label-slack", "2", "--workers", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    new = "4-30-176x144"
    shutil.copyfile(root.entries[SOURCE].video_path, copy / "videos" / f"{new}.mp4")
    shutil.copytree(root.entries[SOURCE].crop_dir, copy / root.crops_dir.relative_to(root.root) / new)
    listing = copy / "test_set.txt"
    listing.write_text(listing.read_text() + f"{new}\n")
    args = ["predict", "--cache", str(cache_copy), "--dataset", "affwild2", "--split", "test", "--checkpoint", model,
            "--format", "abaw", "--out", str(tmp_path / "sub")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    said = f"failed {new}: {listing.resolve()}: line 3: test entry '{new}' is not in the cache: no `features` run"
    assert said in r.output, r.output
    assert sorted(p.name for p in (tmp_path / "sub").glob("*.txt")) == [f"{CUT}.txt", f"{PAST}.txt"]
    assert new in dict(json.loads((tmp_path / "sub" / "predict.json").read_text())["failed"])
    command = r.output.split(said, 1)[1].split("run `", 1)[1].split("`", 1)[0]
    assert "--faces cropped_aligned" in command, command
    r = CliRunner().invoke(main, [*shlex.split(command)[2:], "--no-progress"])   # python cli.py features ...
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "sub" / f"{new}.txt").read_text().splitlines()) == 1 + 60


def test_a_test_entry_the_list_lost_after_features_gets_no_file(root, model, tmp_path):
    """The organisers' list loses an entry after `features` ran (a corrected list): predict wrote its file into the
    submission anyway, exit 0, until the next `features` run marked it unlisted (then predict refused it). Now it is
    named at once, with the list and what to run, and gets no file; the command printed, run, marks it unlisted."""
    copy, cache_copy = tmp_path / "root", tmp_path / "zarr"
    shutil.copytree(root.root, copy)
    feat = ["features", "--dataset", "affwild2", "--root", str(copy), "--cache", str(cache_copy), "--faces",
            "cropped_aligned", "--weights", "random", "--stages", "align,motion", "--label-slack", "2", "--workers",
            "1", "--no-progress"]
    r = CliRunner().invoke(main, feat)
    assert r.exit_code == 0, r.output
    listing = copy / "test_set.txt"
    listing.write_text(f"{PAST}.mp4\n")   # CUT taken out
    args = ["predict", "--cache", str(cache_copy), "--dataset", "affwild2", "--split", "test", "--checkpoint", model,
            "--format", "abaw", "--out", str(tmp_path / "sub")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    said = f"failed {CUT}: {listing.resolve()}: test entry '{CUT}' is cached but no longer in the list"
    assert said in r.output, r.output
    assert sorted(p.name for p in (tmp_path / "sub").glob("*.txt")) == [f"{PAST}.txt"]
    assert CUT in dict(json.loads((tmp_path / "sub" / "predict.json").read_text())["failed"])
    command = r.output.split(said, 1)[1].split("run `", 1)[1].split("`", 1)[0]
    r = CliRunner().invoke(main, [*shlex.split(command)[2:], "--no-progress"])   # python cli.py features ...
    assert r.exit_code == 0 and f"1 cached video no longer in dataset 'affwild2': {CUT}" in r.output, r.output
