"""A cached video is identified with its source by contents, not mtime (pipeline/sources.py).

A dataset root copied without its mtimes (cp -r, rsync without -t, a node's scratch) re-extracted every video and
changed every training run's identity, while a file replaced by one of the same size and mtime went unseen. Real
videos encoded by OpenCV (uncompressed I420, so that two different videos have the same size), real dlib, a real
Zarr cache and the real `features` command line with a LocalCluster, as a user runs it.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from openface_csv import write_openface_csv
from synth_video import write_face_video
from test_cli_input import cli, features

from features.errors import BadInputError
from pipeline import extract, faces, graph, sources, store
from pipeline.extract import Settings
from pipeline.manifest import VideoEntry, get_dataset, list_videos
from train import videos

N = 40                                   # 240x180 I420: 2.6 MB a video, more than the 2 MiB head and tail
VIDEOS = ("a", "b", "c")
DPHASE = ["dphase_s0", "dphase_s1"]
PAST = time.time() - 100_000             # the originals' mtimes: a copy made now has others, whatever the clock


def _write(path: Path, seed: int) -> None:
    write_face_video(path, N, size=(240, 180), motion="translate", fourcc="I420", seed=seed)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A labelled Aff-Wild layout of three videos and its cache (align, motion, spatial)."""
    base = tmp_path_factory.mktemp("source_identity")
    root = base / "data"
    (root / "videos" / "train").mkdir(parents=True)
    for seed, v in enumerate(VIDEOS):
        _write(root / "videos" / "train" / f"{v}.avi", seed)
        for dim in ("arousal", "valence"):
            (root / "annotations" / "train" / dim).mkdir(parents=True, exist_ok=True)
            np.savetxt(root / "annotations" / "train" / dim / f"{v}.txt", np.linspace(-1, 1, N), fmt="%.4f")
    for f in root.rglob("*.*"):
        os.utime(f, (PAST, PAST))
    cache = base / "cache"
    r = features(cache, root)
    assert r.returncode == 0 and "done: 3 new" in r.stdout, r.stdout + r.stderr[-3000:]
    return root, cache


def _copy(made, tmp_path: Path, keep_mtimes: bool = False) -> tuple[Path, Path]:
    """The dataset root copied as `cp -r` does (new mtimes, the same bytes), or as `cp -rp` does; the cache as is."""
    root, cache = made
    shutil.copytree(root, tmp_path / "data", copy_function=shutil.copy2 if keep_mtimes else shutil.copy)
    shutil.copytree(cache, tmp_path / "cache")
    for v in VIDEOS:
        same = int(_video(tmp_path / "data", v).stat().st_mtime) == int(_video(root, v).stat().st_mtime)
        assert same == keep_mtimes
    return tmp_path / "data", tmp_path / "cache"


def _video(root: Path, v: str) -> Path:
    return root / "videos" / "train" / f"{v}.avi"


def _stamps(cache: Path) -> dict:
    """When each video's arrays were last written: a re-extraction rewrites them."""
    return {v: (store.video_dir(cache, "demo", v) / "dphase_s0" / "zarr.json").stat().st_mtime_ns for v in VIDEOS}


def _run_sources(cache: Path) -> dict:
    """The sources part of a training run's identity (what --resume and ablate compare), as train reads it."""
    return videos.select(cache, "demo", DPHASE).sources


def _planned(cache: Path, root: Path) -> str:
    r = features(cache, root, "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    return r.stdout


def test_a_copied_dataset_root_with_new_mtimes_extracts_nothing_again(made, tmp_path):
    root, cache = _copy(made, tmp_path)
    stamps, run = _stamps(cache), _run_sources(cache)
    plan = _planned(cache, root)
    assert "0 to extract, 0 to update, 3 already done" in plan and "source video changed" not in plan, plan
    r = features(cache, root)
    assert r.returncode == 0 and "done: 0 new, 0 updated, 3 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    assert _stamps(cache) == stamps
    assert _run_sources(cache) == run                     # so --resume and ablate reuse what was trained


def test_a_video_replaced_by_one_of_the_same_size_and_mtime_is_extracted_again(made, tmp_path):
    root, cache = _copy(made, tmp_path, keep_mtimes=True)
    old = _video(root, "b")
    before = store.open_video(cache, "demo", "b")["face48"][:]
    run = _run_sources(cache)
    _write(tmp_path / "other.avi", seed=7)               # other pixels, the same codec, frames and frame size
    assert (tmp_path / "other.avi").stat().st_size == old.stat().st_size
    st = old.stat()
    shutil.copyfile(tmp_path / "other.avi", old)
    os.utime(old, ns=(st.st_atime_ns, st.st_mtime_ns))    # `touch -r`: size and mtime as they were
    plan = _planned(cache, root)
    assert "1 to extract, 0 to update, 2 already done" in plan and "source video changed" in plan, plan
    r = features(cache, root)
    assert r.returncode == 0 and "done: 0 new, 1 rebuilt, 0 updated, 2 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    assert "1 done video (b): source video changed: rebuilt" in r.stdout   # said before the work, not only in --dry-run
    assert not np.array_equal(store.open_video(cache, "demo", "b")["face48"][:], before)
    now = _run_sources(cache)
    assert now["b"] != run["b"] and {v: now[v] for v in "ac"} == {v: run[v] for v in "ac"}


def test_a_video_copied_over_while_its_frames_are_read_fails_and_caches_nothing_of_either(made, tmp_path):
    """A file copied over in place (`cp`, `rsync --inplace`) while `features` read it gave the decoder the old file's
    first frames and the new one's last: the group was done, recording the old file's identity over mixed frames, so
    with the old file put back a rerun skipped it as done. Now the file is checked after its frames are read."""
    root, cache = _copy(made, tmp_path, keep_mtimes=True)
    cache = tmp_path / "fresh"
    video, kept = _video(root, "b"), tmp_path / "b.avi"
    shutil.copyfile(video, kept)
    _write(tmp_path / "other.avi", seed=7)               # the same size: only the contents say it changed
    entry = next(e for e in list_videos(get_dataset("demo", root=root)) if e.video == "b")
    s = Settings(stages=("align",), weights="random")
    chunks = []

    def copy_over(n: int) -> None:                       # after the first decoded chunk: a copy lands on the file
        chunks.append(n)
        if len(chunks) == 1:
            shutil.copyfile(tmp_path / "other.avi", video)

    row = extract.process_video(str(cache), "demo", entry, s, report=copy_over)
    assert 0 < chunks[0] < N and sum(chunks) == N        # frames from both files were decoded
    assert row["status"] == "failed", row
    assert row["error"].startswith(f"{video}: the file changed while its frames were read"), row["error"]
    assert "run the command again once nothing writes to the file" in row["error"]   # features, or predict
    assert store.group_status(cache, "demo", "b") is None   # nothing of the mixed frames is kept

    shutil.copyfile(kept, video)                         # the old file put back: extracted, from its own frames only
    row = extract.process_video(str(cache), "demo", entry, s)
    assert row["status"] == "done" and row["action"] == "full", row
    np.testing.assert_array_equal(store.open_video(cache, "demo", "b")["face48"][:],
                                  store.open_video(made[1], "demo", "b")["face48"][:])


@pytest.fixture(scope="module")
def cut_b(made, tmp_path_factory):
    """A copy whose video b was cut since it was cached: the rebuild fails and the cache keeps the arrays made from
    the whole file; then `train` on it (one epoch). (root, cache, the cut video, the run's folder, train's result)"""
    base = tmp_path_factory.mktemp("cut_b")
    root, cache = _copy(made, base, keep_mtimes=True)
    video = _video(root, "b")
    video.write_bytes(video.read_bytes()[:video.stat().st_size // 2])
    r = features(cache, root)
    assert r.returncode == 1 and f"{video}: the video decodes to" in r.stdout, r.stdout + r.stderr[-3000:]
    out = base / "run"
    r = cli("train", "--cache", cache, "--dataset", "demo", "--out", out, "--streams", "spatial", "--epochs", "1",
            "--folds", "3", "--num-workers", "0", cwd=base)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, cache, video, out, r


def _says_b_not_updated(text: str, video: Path, reads: str, listed: str) -> bool:
    """Whether ``text`` holds the one wording (pipeline/not_updated.py) for b, read by ``reads``, listed ``listed``."""
    return bool(re.search(rf"1 video read as cached before its last `features` run, which reported an error \(b: "
                          rf"{re.escape(str(video))}: the video decodes to \d+ frames.*\): {re.escape(reads)} the "
                          rf"arrays made before, from its file as it was then; {re.escape(listed)}", text, re.M))


def test_train_says_it_reads_a_done_video_whose_last_update_failed(cut_b):
    """A done video whose file was cut since keeps the arrays made from the whole file (the rebuild fails); `info`
    named it, `train` read it without a word. It is read (its arrays match the source they record), and said: on
    stderr and in metrics.json's not_updated, with the error."""
    _, _, video, out, r = cut_b
    assert re.search(r"^1 video read as cached", r.stderr, re.M), r.stderr[-3000:]
    assert _says_b_not_updated(r.stderr, video, "this run reads", "metrics.json lists it in not_updated"), \
        r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["not_updated"]) == ["b"] and metrics["not_updated"]["b"].startswith(f"{video}: the video "
                                                                                             "decodes to")
    assert metrics["left_out"] == {}                     # read, not left out


def test_predict_and_export_say_they_read_a_done_video_whose_last_update_failed(cut_b, tmp_path):
    """`predict --cache` and `export` read such a video without a word (a submission, an HDF5 made partly from a file
    as it was before). Both still read it, and say it: the console, predict.json's not_updated, the HDF5's root attr
    not_updated and b's group attr."""
    _, cache, video, run, _ = cut_b
    r = cli("predict", "--cache", cache, "--dataset", "demo", "--checkpoint", run / "best.pt", "--out",
            tmp_path / "pred", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert _says_b_not_updated(r.stdout, video, "this run predicts from", "predict.json lists it in not_updated"), \
        r.stdout
    made = json.loads((tmp_path / "pred" / "predict.json").read_text())
    assert list(made["not_updated"]) == ["b"] and made["not_updated"]["b"].startswith(f"{video}: the video decodes")
    assert "b" not in made["failed"]                     # predicted, not failed

    r = cli("export", "--cache", cache, "--dataset", "demo", "--out", tmp_path / "x.h5", cwd=tmp_path)
    assert r.returncode == 0 and "wrote 3 videos" in r.stdout, r.stdout + r.stderr[-3000:]
    assert _says_b_not_updated(r.stderr, video, "the file holds", "the file's attrs list it in not_updated"), r.stderr
    with h5py.File(tmp_path / "x.h5", "r") as h5:
        assert list(json.loads(h5.attrs["not_updated"])) == ["b"]
        assert h5["b"].attrs["not_updated"].startswith(f"{video}: the video decodes to")
        assert "not_updated" not in h5["a"].attrs


def test_a_group_with_the_old_size_and_mtime_identity_is_kept_then_survives_a_copy(made, tmp_path):
    """Groups written before identities followed contents hold [size, int(mtime)]: they are not extracted again
    while that still matches; the run records the content identity beside it, so a later copy extracts nothing."""
    root2, cache2 = _copy(made, tmp_path, keep_mtimes=True)   # the mtimes the old identities were made with
    for v in VIDEOS:
        st = _video(root2, v).stat()
        g = store.open_video(cache2, "demo", v, mode="r+")
        g.attrs["source_identity"] = [st.st_size, int(st.st_mtime)]   # as the code before wrote it
        assert "source_content" not in g.attrs
    run, stamps = _run_sources(cache2), _stamps(cache2)
    r = features(cache2, root2)
    assert r.returncode == 0 and "done: 0 new, 0 updated, 3 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    assert _stamps(cache2) == stamps
    assert _run_sources(cache2) == run                  # the run identity does not change with the upgrade

    for v in VIDEOS:                                     # now copied as `cp -r` does: new mtimes, same bytes
        shutil.copy(_video(root2, v), tmp_path / "x.avi")
        shutil.move(tmp_path / "x.avi", _video(root2, v))
    plan = _planned(cache2, root2)
    assert "0 to extract, 0 to update, 3 already done" in plan, plan
    for v in VIDEOS:   # because the first run recorded the content identity beside the old one, which it kept
        attrs = store.open_video(cache2, "demo", v).attrs
        assert attrs["source_content"] == sources.video_identity(_video(root2, v))
        assert sources.is_legacy(attrs["source_identity"])   # what runs made from this group hold
    assert _run_sources(cache2) == run


def test_an_old_identity_that_no_longer_matches_is_a_change(made, tmp_path):
    """A legacy [size, mtime] cannot tell a copy from an edit: where it no longer matches, the video is rebuilt."""
    root, cache = _copy(made, tmp_path, keep_mtimes=True)
    st = _video(root, "a").stat()
    store.open_video(cache, "demo", "a", mode="r+").attrs["source_identity"] = [st.st_size, int(st.st_mtime) - 60]
    plan = _planned(cache, root)
    assert "1 to extract, 0 to update, 2 already done" in plan and "source video changed" in plan, plan


def test_a_label_file_edited_after_extraction_is_refused_until_features_updates_the_labels(made, tmp_path):
    """A corrected label file (annotations are re-released) left `train` on the cached values without a word: the
    labels array is fingerprinted by its files' contents, but no reader looked at the files again. Each group records
    where its labels were read (a copied root's files once `features` has run on it), and readers compare."""
    root, cache = _copy(made, tmp_path)
    r = features(cache, root)                            # the copy's label files become the ones its groups name
    assert r.returncode == 0 and "done: 0 new, 0 updated, 3 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    run = _run_sources(cache)
    edited = root / "annotations" / "train" / "valence" / "b.txt"
    values = np.loadtxt(edited)
    values[5] = 0.9
    np.savetxt(edited, values, fmt="%.4f")
    with pytest.raises(BadInputError) as e:
        _run_sources(cache)
    msg = str(e.value)
    assert "video 'b'" in msg and str(edited.resolve()) in msg and "changed since" in msg, msg
    assert str((root / "annotations" / "train" / "arousal" / "b.txt").resolve()) not in msg, msg   # not edited
    assert "video 'a'" not in msg and f"python cli.py features --dataset demo --cache {cache}" in msg, msg
    r = features(cache, root)
    assert r.returncode == 0 and "done: 0 new, 1 updated, 2 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    assert store.open_video(cache, "demo", "b")["labels"][5, 1] == pytest.approx(0.9)
    assert _run_sources(cache) == run                    # the video itself was not extracted again


def test_a_video_moved_to_another_split_is_held_out_as_the_dataset_now_says(made, tmp_path):
    """Moving a video and its labels from train/ to test/ matched its group by contents, so `features` skipped it and
    the group kept split 'train': `train` went on training on a video the dataset now holds out."""
    root, cache = _copy(made, tmp_path)
    stamps = _stamps(cache)
    for file in ("videos/{}/b.avi", "annotations/{}/arousal/b.txt", "annotations/{}/valence/b.txt"):
        (root / file.format("test")).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(root / file.format("train"), root / file.format("test"))
    r = features(cache, root)
    assert r.returncode == 0 and "done: 0 new, 0 updated, 3 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    assert "b: done; split 'train' -> 'test'" in r.stdout, r.stdout
    assert _stamps(cache) == stamps                      # nothing extracted again
    rows = {row["video"]: row["split"] for row in videos.select(cache, "demo", DPHASE).rows}
    assert rows == {"a": "train", "b": "test", "c": "train"}
    assert dict(zip(store.read_index(cache, "demo").video, store.read_index(cache, "demo").split))["b"] == "test"


def _move(root: Path, video: str, there: Path) -> None:
    """Move a video's file and its label files from under ``root`` to ``there`` (the same relative paths)."""
    for file in (f"videos/train/{video}.avi", f"annotations/train/arousal/{video}.txt",
                 f"annotations/train/valence/{video}.txt"):
        (there / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(root / file, there / file)


def test_a_video_taken_out_of_the_dataset_is_refused_kept_and_deleted_only_with_prune(made, tmp_path):
    """A video removed from the dataset kept its group and index row, and `train` went on using it: `features` lists
    only the dataset's videos and never looked at the others. A failed one's row made `train` refuse for ever."""
    root, cache = _copy(made, tmp_path)
    stamps = _stamps(cache)
    (root / "videos" / "train" / "d.avi").write_bytes(b"not a video")   # fails, and leaves a failure record
    np.savetxt(root / "annotations" / "train" / "arousal" / "d.txt", np.zeros(N))
    np.savetxt(root / "annotations" / "train" / "valence" / "d.txt", np.zeros(N))
    r = features(cache, root)
    assert r.returncode == 1 and "failed: 1" in r.stdout, r.stdout + r.stderr[-3000:]

    aside = tmp_path / "aside"
    _move(root, "c", aside)
    _move(root, "d", aside)
    r = features(cache, root)
    assert r.returncode == 0 and "done: 0 new, 0 updated, 2 skipped" in r.stdout, r.stdout + r.stderr[-3000:]
    assert "1 cached video no longer in dataset 'demo': c." in r.stdout, r.stdout
    assert "dropped the failure records of 1 cached video no longer in dataset 'demo': d" in r.stdout, r.stdout
    assert set(store.read_index(cache, "demo").video) == {"a", "b", "c"}
    with pytest.raises(BadInputError, match=r"1 of 3 videos cannot be read: video 'c' is no longer in dataset"):
        videos.select(cache, "demo", DPHASE)
    sel = videos.select(cache, "demo", DPHASE, skip_unusable=True)
    assert [r["video"] for r in sel.rows] == ["a", "b"] and "no longer in dataset" in sel.left_out["c"]

    _move(aside, "c", root)                              # back: usable again, nothing extracted again
    r = features(cache, root)
    assert r.returncode == 0 and "c: done; back in the dataset" in r.stdout, r.stdout + r.stderr[-3000:]
    assert [r["video"] for r in videos.select(cache, "demo", DPHASE).rows] == ["a", "b", "c"]
    assert _stamps(cache) == stamps

    _move(root, "c", aside)
    r = features(cache, root, "--prune")
    assert r.returncode == 0 and "deleted 1 cached video no longer in dataset 'demo' (--prune): c" in r.stdout, \
        r.stdout + r.stderr[-3000:]
    assert not store.video_dir(cache, "demo", "c").exists() and set(store.read_index(cache, "demo").video) == {"a", "b"}
    assert [r["video"] for r in videos.select(cache, "demo", DPHASE).rows] == ["a", "b"]


def test_an_omg_label_table_edited_after_extraction_is_refused_until_features_reads_it_again(tmp_path):
    """OMG's labels are one row each of a CSV, not files of their own: the group records the table's contents, so an
    edited table is refused (every utterance: which rows changed is known only by reading it again) until `features`
    has read it again, which updates the changed rows' labels and nothing else."""
    root, cache = tmp_path / "omg", tmp_path / "cache"
    (root / "videos" / "vidA").mkdir(parents=True)
    for u in ("u1", "u2"):
        write_face_video(root / "videos" / "vidA" / f"{u}.mp4", 12, size=(160, 120), seed=len(u))
    table = root / "omg_TrainVideos.csv"

    def write_table(arousal_u2: str) -> None:
        with open(table, "w", newline="") as fh:
            csv.writer(fh).writerows([["link", "start", "end", "video", "utterance", "arousal", "valence", "x"],
                                      ["l", "0", "1", "vidA", "u1.mp4", "0.5", "0.1", "3"],
                                      ["l", "0", "1", "vidA", "u2.mp4", arousal_u2, "0.3", "3"]])

    def extract() -> graph.Summary:
        s = Settings(stages=("align",), weights="random")
        entries = list_videos(get_dataset("omg", root=root))
        return graph.run(entries, cache, "omg", s, workers=1, progress=False, echo=lambda *a: None,
                         whole_dataset=True)

    write_table("0.2")
    assert [r["status"] for r in extract().rows] == ["done", "done"]
    write_table("0.9")
    for video in ("vidA__u1", "vidA__u2"):
        with pytest.raises(store.UnusableVideo, match=f"labels were cached from files that have changed since: "
                                                      f"{table.resolve()}"):
            store.check_arrays(cache, "omg", video, ["labels"])
    assert {r["video"]: r["action"] for r in extract().rows} == {"vidA__u1": "skip", "vidA__u2": "update"}
    for video in ("vidA__u1", "vidA__u2"):
        store.check_arrays(cache, "omg", video, ["labels"])
    assert store.index_row(cache, "omg", "vidA__u2")["video_arousal"] == pytest.approx(0.9)


def test_an_openface_csv_is_identified_by_its_whole_contents(tmp_path):
    """The CSV's identity was [size, int(mtime)] too: a copied one counted as changed, a same-size edit did not."""
    lm = np.tile(np.linspace(50, 150, 68 * 2).reshape(1, 68, 2), (N, 1, 1))
    here, there = tmp_path / "of", tmp_path / "copy"
    here.mkdir()
    write_openface_csv(here / "a.csv", [(lm, np.ones(N, bool))])
    os.utime(here / "a.csv", (PAST, PAST))
    shutil.copytree(here, there, copy_function=shutil.copy)   # new mtime, same bytes
    entry = VideoEntry("a", None, "train", {})
    made = faces.origin(Settings(faces="openface", faces_dir=str(here)), entry)
    copied = faces.origin(Settings(faces="openface", faces_dir=str(there)), entry)
    assert faces.origin_change(made, copied) is None
    csv = there / "a.csv"
    st, text = csv.stat(), csv.read_text()
    lines = text.split("\n")
    lines[N // 2] = lines[N // 2].replace(", 0.98, ", ", 0.97, ", 1)   # one confidence mid-file, the same size
    edited = "\n".join(lines)
    assert edited != text and len(edited) == len(text)
    csv.write_text(edited)
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = faces.origin(Settings(faces="openface", faces_dir=str(there)), entry)
    assert faces.origin_change(made, now) == f"{csv} changed"
    legacy = {**made, "identity": [st.st_size, int(st.st_mtime)]}       # a group made before: honoured as made
    assert faces.origin_change(legacy, now) is None
    assert faces.origin_change({**legacy, "identity": [st.st_size, int(st.st_mtime) - 1]}, now) == f"{csv} changed"


def test_labels_released_after_extraction_are_said_until_features_reads_them(tmp_path):
    """OMG's test CSV came without labels for the challenge and with them after it: a cache extracted before held
    the test utterances as unlabelled, and `train` (which leaves such videos out) silently cross-validated instead of
    holding them out. The group records where its labels would be; readers refuse until `features` reads them."""
    root, cache = tmp_path / "omg", tmp_path / "cache"
    for v, u in (("vidA", "u1"), ("vidA", "u2"), ("vidT", "u1")):
        (root / "videos" / v).mkdir(parents=True, exist_ok=True)
        write_face_video(root / "videos" / v / f"{u}.mp4", 12, size=(160, 120), seed=len(v + u))
    head = ["link", "start", "end", "video", "utterance"]
    for name, rows in (("omg_TrainVideos.csv", [["l", "0", "1", "vidA", "u1.mp4", "0.5", "0.1", "3"],
                                                ["l", "0", "1", "vidA", "u2.mp4", "0.2", "0.3", "3"]]),
                       ("omg_TestVideos_WithoutLabels.csv", [["l", "0", "1", "vidT", "u1.mp4"]])):
        with open(root / name, "w", newline="") as fh:
            labelled = len(rows[0]) > 5
            csv.writer(fh).writerows([head + (["arousal", "valence", "x"] if labelled else []), *rows])

    def extract() -> graph.Summary:
        entries = list_videos(get_dataset("omg", root=root))
        return graph.run(entries, cache, "omg", Settings(stages=("align",), weights="random"), workers=1,
                         progress=False, echo=lambda *a: None, whole_dataset=True)

    assert [r["status"] for r in extract().rows] == ["done"] * 3
    assert store.known_unlabelled(store.index_row(cache, "omg", "vidT__u1"))
    videos.select(cache, "omg", [])                      # nothing released yet: the test utterance is left aside
    released = root / "omg_TestVideos_WithLabels.csv"
    with open(released, "w", newline="") as fh:
        csv.writer(fh).writerows([head + ["arousal", "valence", "x"], ["l", "0", "1", "vidT", "u1.mp4", "0.7", "0.4",
                                                                       "1"]])
    with pytest.raises(store.UnusableVideo, match=f"labels for it have appeared since: {released.resolve()}"):
        store.check_arrays(cache, "omg", "vidT__u1", ["labels"])
    with pytest.raises(BadInputError, match=r"1 video was cached without labels \(vidT__u1\), and labels for it "
                                            r"have appeared since") as e:
        videos.select(cache, "omg", [])
    # the command that reads them repeats the cache's recorded flags, quoted, as every repair command does
    assert e.value.hint.startswith(f"run `{store.repair_command(cache, 'omg', ['labels'])}`: it reads the labels")
    assert f"--cache {cache} --stages align" in e.value.hint
    assert {r["video"]: r["action"] for r in extract().rows}["vidT__u1"] == "update"
    store.check_arrays(cache, "omg", "vidT__u1", ["labels"])
    assert store.index_row(cache, "omg", "vidT__u1")["video_arousal"] == pytest.approx(0.7)
    assert {r["split"] for r in videos.select(cache, "omg", []).rows} == {"train", "test"}
