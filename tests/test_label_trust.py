"""Labels are what the dataset's files hold now, frame for frame, and every labelled video is accounted for.

A root and cache copied with `cp -r` and a label edited in the copy scored the old labels (the files were compared at
the absolute path recorded at extraction); so did a cache whose old copy was deleted ("nothing to compare"), one whose
`features` update of the labels failed, and an annotation moved to another split by a new release (still held out as
validation). A blank line mid-file shifted every later label by a frame, which --label-slack accepted. A held-out
video with every label -5 vanished from the scores without a word, and `info` said every labelled cache was MIXED.

Real videos (OpenCV) in the Aff-Wild2 layout (tests/affwild2_layout.py), the organiser crops as faces, the real
`features` command line (a subprocess with a LocalCluster), a real Zarr cache, and real training and prediction.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from affwild2_layout import build_affwild2_layout
from click.testing import CliRunner
from test_cli_input import cli, no_traceback

from cli import main
from features.errors import BadInputError
from pipeline import info, store
from pipeline.annotations import read_affwild2_file, read_value_file
from train import videos
from train.predict import predict_cache
from train.trainer import TrainConfig, train

PAIR = "5-30-480x240"                    # a two-person video: entries PAIR_left, PAIR_right
LEFT, RIGHT = f"{PAIR}_left", f"{PAIR}_right"
ALL_INVALID = "2-24-176x144"            # a Validation_Set entry whose every label line is -5
DPHASE = ["dphase_s0", "dphase_s1"]
TINY = {"dataset": "affwild2", "streams": "temporal", "width": 4, "window": 4, "length": 32, "stride": 16,
        "batch_size": 4, "folds": 2, "lr": 0.1, "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True,
        "plots": False, "epochs": 1}


def features(base: Path, *flags, env: dict | None = None):
    """`cli.py features` on the Aff-Wild2 layout under ``base`` (data/, zarr/), from its crops, run in ``base``."""
    return cli("features", "--dataset", "affwild2", "--cache", "zarr", "--faces", "cropped_aligned",
               "--crops-dir", base / "data" / "cropped_aligned", "--label-slack", "1", "--stages", "align,motion",
               "--workers", "1", "--no-progress", *flags, cwd=base, env=env)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The layout (data/) and its cache (zarr/), extracted with a relative `--root data`, and a temporal model."""
    base = tmp_path_factory.mktemp("label_trust")
    layout = build_affwild2_layout(base / "data", openface=False)
    e = layout.entries[ALL_INVALID]
    e.label_path.write_text("valence,arousal\n" + "-5,-5\n" * e.n_frames)
    r = features(base, "--root", "data")
    assert r.returncode == 0 and "done: 5 new" in r.stdout, r.stdout + r.stderr[-3000:]
    m = train(TrainConfig(cache=str(base / "zarr"), out=str(base / "run"), **TINY))
    return base, layout, m


def _copy(made, dst: Path) -> Path:
    """The root and the cache copied as `cp -r` copies them (new mtimes, the same bytes), side by side."""
    base = made[0]
    for part in ("data", "zarr"):
        shutil.copytree(base / part, dst / part, copy_function=shutil.copy)
    return dst


def _label(base: Path, split: str, entry: str) -> Path:
    return base / "data" / "annotations" / "VA_Set" / split / f"{entry}.txt"


def _edit(path: Path) -> None:
    """A corrected value (frame 9), the same number of lines."""
    lines = path.read_text().splitlines()
    lines[10] = "0.9,0.9"
    path.write_text("\n".join(lines) + "\n")


def _stamps(cache: Path) -> dict:
    """When each video's arrays were last written: a re-extraction rewrites them."""
    vids = store.dataset_dir(cache, "affwild2") / "videos"
    return {d.name: (d / "dphase_s0" / "zarr.json").stat().st_mtime_ns for d in vids.iterdir()}


def test_a_label_edited_in_a_copied_root_is_refused_by_train_and_predict(made, tmp_path):
    """Root and cache copied together: the copy's label files are the ones compared (the recorded --root moved with
    the cache), not the originals at the paths recorded when the cache was made."""
    base = _copy(made, tmp_path)
    cache = base / "zarr"
    stamps = _stamps(cache)
    assert [r["video"] for r in videos.select(cache, "affwild2", DPHASE).rows]   # unchanged: it reads as it is
    edited = _label(base, "Validation_Set", LEFT)
    _edit(edited)
    with pytest.raises(BadInputError) as e:
        videos.select(cache, "affwild2", DPHASE)
    msg = str(e.value)
    assert f"video '{LEFT}'" in msg and f"files that have changed since: {edited.resolve()}" in msg, msg
    assert f"the dataset's root {(base / 'data').resolve()}" in msg and "python cli.py features" in msg, msg
    with pytest.raises(BadInputError, match="changed since"):
        train(TrainConfig(cache=str(cache), out=str(tmp_path / "run"), **TINY))
    res = predict_cache(cache, "affwild2", [made[0] / "run" / "best.pt"], tmp_path / "pred", split="validation",
                        echo=lambda *a: None)
    failed = dict(res["failed"])
    assert str(edited.resolve()) in failed[LEFT] and RIGHT not in failed
    assert res["scores"]["videos"] == [RIGHT]
    assert _stamps(cache) == stamps                      # nothing was extracted again


def test_the_root_configured_now_is_compared_when_the_old_copy_is_gone(made, tmp_path, monkeypatch):
    """A cache made from $AFFWILD2_ROOT, then root and cache copied on and the first copy deleted: its recorded
    files are gone, which was "nothing to compare". The root configured now (the variable), and without it the
    copy beside the moved cache, is compared, and an unchanged copy still needs no extraction."""
    first = _copy(made, tmp_path / "first")
    r = features(first, env={"AFFWILD2_ROOT": str(first / "data")})
    assert r.returncode == 0 and "done: 0 new, 0 updated, 5 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    second = tmp_path / "second"
    shutil.copytree(first, second, copy_function=shutil.copy)
    shutil.rmtree(first)
    cache = second / "zarr"
    monkeypatch.setenv("AFFWILD2_ROOT", str(second / "data"))
    assert {r["video"] for r in videos.select(cache, "affwild2", DPHASE).rows} == set(made[1].entries) - {ALL_INVALID}
    edited = _label(second, "Train_Set", "video10_1")
    _edit(edited)
    with pytest.raises(BadInputError, match=rf"files that have changed since: {edited.resolve()} \(the dataset's "
                                            r"root \S+: from \$AFFWILD2_ROOT\)"):
        videos.select(cache, "affwild2", DPHASE)
    manifest = tmp_path / "manifest.yaml"   # not configured here: the variable unset, a default that is absent
    manifest.write_text("datasets:\n  affwild2:\n    layout: affwild2\n    root_env: AFFWILD2_ROOT\n"
                        f"    root_default: {tmp_path / 'absent'}\n")
    monkeypatch.setenv("MIMAMO_MANIFEST", str(manifest))
    monkeypatch.delenv("AFFWILD2_ROOT")
    with pytest.raises(BadInputError, match=r"changed since: .* at the same place beside the cache, which has moved"):
        videos.select(cache, "affwild2", DPHASE)


def test_a_failed_label_update_does_not_leave_train_on_the_old_labels(made, tmp_path):
    """`features --root` on another copy of the root whose label update failed (here: lines added past
    --label-slack) kept the group's record of the first copy's file, unchanged, and train used the stale labels.
    The root the run read is recorded whatever became of its videos: readers compare with that one."""
    base = _copy(made, tmp_path)
    shutil.copytree(base / "data", base / "data2", copy_function=shutil.copy)
    edited = base / "data2" / "annotations" / "VA_Set" / "Train_Set" / "1-30-176x144.txt"
    _edit(edited)
    edited.write_text(edited.read_text() + "0.1,0.1\n" * 5)
    r = features(base, "--root", "data2")
    no_traceback(r)
    assert r.returncode == 1 and "label count mismatch" in r.stdout, r.stdout + r.stderr[-3000:]
    with pytest.raises(BadInputError, match=rf"video '1-30-176x144': labels were cached from files that have "
                                            rf"changed since: {edited.resolve()} \(the dataset's root \S+/data2: the "
                                            r"--root of the last `features` run\)"):
        videos.select(base / "zarr", "affwild2", DPHASE)


def test_an_annotation_moved_to_another_split_is_said_until_features_records_it(made, tmp_path):
    """A new release moved an annotation from Validation_Set/ to Train_Set/: its recorded file is gone, which was
    taken for a moved cache, and train went on holding the video out as validation."""
    base = _copy(made, tmp_path)
    cache = base / "zarr"
    stamps = _stamps(cache)
    for entry in (LEFT, RIGHT):   # both people of the recording
        shutil.move(_label(base, "Validation_Set", entry), _label(base, "Train_Set", entry))
    with pytest.raises(BadInputError) as e:
        videos.select(cache, "affwild2", DPHASE)
    msg = str(e.value)
    assert f"its label file annotations/VA_Set/Validation_Set/{LEFT}.txt is not there any more" in msg, msg
    assert f"the dataset now has annotations/VA_Set/Train_Set/{LEFT}.txt: moved to another split?" in msg, msg
    assert "`features` reads the dataset as it is now" in msg and "python cli.py features --dataset affwild2" in msg
    r = features(base, "--root", "data")
    assert r.returncode == 0 and f"{LEFT}: done; split 'validation' -> 'train'" in r.stdout, r.stdout + r.stderr
    splits = {r["video"]: r["split"] for r in videos.select(cache, "affwild2", DPHASE).rows}
    assert splits[LEFT] == splits[RIGHT] == "train"
    assert _stamps(cache) == stamps


def test_groups_made_before_relative_paths_are_not_compared_with_another_copy(made, tmp_path, monkeypatch):
    """A cache made by an earlier version records absolute paths only (no `relative`, no dataset_root.json): copied
    with its root, a label edited in the copy was compared at the original's path. Outside the root found, they
    are refused until `features` records them anew, which reads the edited labels and extracts nothing else."""
    base = _copy(made, tmp_path)
    cache = base / "zarr"
    (store.dataset_dir(cache, "affwild2") / "dataset_root.json").unlink()
    for d in (store.dataset_dir(cache, "affwild2") / "videos").iterdir():
        g = store.open_video(cache, "affwild2", d.name, mode="r+")
        g.attrs["label_files"] = {role: {k: v for k, v in rec.items() if k != "relative"}
                                  for role, rec in dict(g.attrs["label_files"]).items()}
    stamps = _stamps(cache)
    edited = _label(base, "Train_Set", "video10_1")
    _edit(edited)
    monkeypatch.setenv("AFFWILD2_ROOT", str(base / "data"))
    with pytest.raises(BadInputError, match=rf"its labels were read from {made[0].resolve()}/data/\S+, outside the "
                                            rf"dataset's root {(base / 'data').resolve()} \(from \$AFFWILD2_ROOT\)"):
        videos.select(cache, "affwild2", DPHASE)
    r = features(base, env={"AFFWILD2_ROOT": str(base / "data")})
    assert r.returncode == 0 and "done: 0 new, 1 updated, 4 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    videos.select(cache, "affwild2", DPHASE)
    assert store.open_video(cache, "affwild2", "video10_1")["labels"][9] == pytest.approx([0.9, 0.9])
    assert {v: t for v, t in _stamps(cache).items() if v != "video10_1"} == \
        {v: t for v, t in stamps.items() if v != "video10_1"}


def test_a_cache_without_its_dataset_says_its_labels_were_not_compared(made, tmp_path, monkeypatch):
    """Only where no root of the dataset is found at all (the cache alone on a cluster) is there nothing to compare,
    and that is said."""
    cache = tmp_path / "zarr"
    shutil.copytree(made[0] / "zarr", cache)
    rec = json.loads((store.dataset_dir(cache, "affwild2") / "dataset_root.json").read_text())
    rec["root"] = str(tmp_path / "gone")
    (store.dataset_dir(cache, "affwild2") / "dataset_root.json").write_text(json.dumps(rec))
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("datasets:\n  affwild2:\n    layout: affwild2\n    root_env: AFFWILD2_ROOT\n"
                        f"    root_default: {tmp_path / 'absent'}\n")
    monkeypatch.setenv("MIMAMO_MANIFEST", str(manifest))
    monkeypatch.delenv("AFFWILD2_ROOT", raising=False)
    sel = videos.select(cache, "affwild2", DPHASE)
    assert len(sel.notes) == 1 and "the labels were not compared with their files" in sel.notes[0]


# ---- every labelled video accounted for -------------------------------------------------------------------


def test_a_held_out_video_without_an_annotated_frame_is_listed_as_left_out(made, tmp_path):
    base, _, m = made
    assert m["split"] == "validation" and ALL_INVALID not in m["videos"]["test"]
    assert "no annotated frame" in m["left_out"][ALL_INVALID]
    assert json.loads((base / "run" / "metrics.json").read_text())["left_out"] == m["left_out"]
    res = predict_cache(base / "zarr", "affwild2", [base / "run" / "best.pt"], tmp_path / "pred",
                        split="validation", echo=lambda *a: None)
    sc = res["scores"]
    assert sorted(sc["videos"]) == [LEFT, RIGHT] and "no annotated frame" in sc["left_out"][ALL_INVALID]
    assert "no annotated frame" in json.loads((tmp_path / "pred" / "predict.json").read_text())["scores"][
        "left_out"][ALL_INVALID]
    r = CliRunner().invoke(main, ["predict", "--cache", str(base / "zarr"), "--dataset", "affwild2", "--split",
                                  "validation", "--checkpoint", str(base / "run" / "best.pt"), "--out",
                                  str(tmp_path / "pred2"), "--no-progress"])
    assert r.exit_code == 0 and f"left out of the scores {ALL_INVALID}: no annotated frame" in r.output, r.output


# ---- label files read frame for frame ---------------------------------------------------------------------


def _line_22_fails_the_video(made, tmp_path, text: str, message: str) -> None:
    """Line 22 of a cached video's label file made ``text``: `features` fails the video with ``message`` after the
    file and line, and keeps the labels it had cached."""
    base = _copy(made, tmp_path)
    path = _label(base, "Train_Set", "1-30-176x144")
    lines = path.read_text().splitlines()
    lines[21] = text
    path.write_text("\n".join(lines) + "\n")
    before = store.open_video(base / "zarr", "affwild2", "1-30-176x144")["labels"][:]
    r = features(base, "--root", "data")
    no_traceback(r)
    assert r.returncode == 1 and f"annotations/VA_Set/Train_Set/1-30-176x144.txt: line 22: {message}" in r.stdout, \
        r.stdout
    np.testing.assert_array_equal(store.open_video(base / "zarr", "affwild2", "1-30-176x144")["labels"][:], before)


def test_a_blank_line_mid_file_fails_the_video_even_within_label_slack(made, tmp_path):
    """A value line blanked (59 values for 60 frames): --label-slack 1 accepted the count, and every label after it
    was a frame early."""
    _line_22_fails_the_video(made, tmp_path, "", "blank line before the value on line 23")


def test_a_label_that_is_not_a_finite_number_fails_the_video_naming_the_line(made, tmp_path):
    """float() reads 'inf' and 'nan': such a line was cached as that frame's label, and training and scoring passed
    the frame over as unlabelled without a word (OMG's table already refused them). Now the line is named."""
    _line_22_fails_the_video(made, tmp_path, "inf,0.2",
                             "'inf,0.2' is not a finite number (fix the file: -5 marks an unannotated frame)")

    aff = tmp_path / "arousal.txt"                       # Aff-Wild's one value a line: the same
    aff.write_text("0.1\n-0.2\nnan\n0.3\n")
    with pytest.raises(BadInputError, match=r"line 3: 'nan' is not a finite number \(fix the file: one finite value"):
        read_value_file(aff)


def test_a_label_outside_minus_one_to_one_fails_the_video_naming_the_line(made, tmp_path):
    """Valence and arousal are in [-1, 1]: a file on a 0-100 scale, or a column of something else, was cached as
    labels and trained on without a word. Now the line is named (Aff-Wild2's -5, an unannotated frame, is taken)."""
    _line_22_fails_the_video(made, tmp_path, "45.2,0.2", "'45.2,0.2': 45.2 is outside [-1, 1] (a corrupt file: "
                             "valence and arousal are in [-1, 1], so values on another scale (0-100?) or from another "
                             "column are not labels; fix or re-download the file (-5 marks an unannotated frame))")

    va = tmp_path / "va.txt"                             # -5 in either value is an unannotated frame; -7 is not
    va.write_text("valence,arousal\n1,-1\n-5,-5\n0.5,-5\n")
    np.testing.assert_array_equal(read_affwild2_file(va), [[-1, 1], [np.nan, np.nan], [np.nan, np.nan]])
    va.write_text("valence,arousal\n0.1,0.2\n-7,0.1\n")
    with pytest.raises(BadInputError, match=r"line 3: '-7,0.1': -7 is outside \[-1, 1\]"):
        read_affwild2_file(va)
    aff = tmp_path / "arousal.txt"                       # Aff-Wild's one value a line: the same, without the -5
    aff.write_text("0.1\n-1\n1\n-5\n")
    with pytest.raises(BadInputError, match=r"line 4: '-5': -5 is outside \[-1, 1\] \(a corrupt file: .*the file\)$"):
        read_value_file(aff)


# ---- info ------------------------------------------------------------------------------------------------------


def test_info_does_not_call_per_video_labels_mixed_but_still_mixed_arrays(made, tmp_path):
    """Each video's labels have a fingerprint of their own (its label files' contents): `info` listed every labelled
    cache as "labels MIXED ... train, predict and export refuse it", which they do not. Arrays made with different
    settings on some videos are still MIXED."""
    cache = tmp_path / "zarr"
    shutil.copytree(made[0] / "zarr", cache)
    lines = "\n".join(info._cache_lines(cache))
    assert "MIXED" not in lines and "per video (each from its own label files)" in lines, lines
    assert f"label files compared with those under {(made[0] / 'data').resolve()} (the --root of the last " \
           "`features` run)" in lines, lines
    store.set_fingerprints(store.open_video(cache, "affwild2", "video10_1", mode="r+"), {"dphase_s0": "other"})
    lines = "\n".join(info._cache_lines(cache))
    assert "MIXED: made 2 ways" in lines and lines.count("MIXED") == 1, lines
