"""The stage graph on a real Dask LocalCluster (2 processes), real OpenCV videos, a real Zarr cache."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from synth_video import write_face_video

from pipeline import extract, graph, store
from pipeline.manifest import get_dataset, list_videos

ROOT = Path(__file__).resolve().parent.parent
FRAMES = {"good_a": 300, "good_b": 60}   # good_a spans two cache chunks (256 + 44)


def _labels(root: Path, split: str, vid: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for dim in ("arousal", "valence"):
        d = root / "annotations" / split / dim
        d.mkdir(parents=True, exist_ok=True)
        np.savetxt(d / f"{vid}.txt", rng.uniform(-1, 1, n), fmt="%.5f")


def make_dataset(root: Path, bad: bool = True) -> Path:
    vids = root / "videos" / "train"
    vids.mkdir(parents=True)
    for i, (vid, n) in enumerate(FRAMES.items()):
        write_face_video(vids / f"{vid}.mp4", n, size=(320, 240), motion="translate_rotate", seed=i)
        _labels(root, "train", vid, n, i)
    if bad:
        (vids / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
        (vids / "empty.mp4").write_bytes(b"")
        write_face_video(vids / "short_labels.mp4", 40, size=(320, 240))
        _labels(root, "train", "short_labels", 35, 9)
    return root


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


@pytest.fixture(scope="module")
def built(tmp_path_factory, cluster):
    root = make_dataset(tmp_path_factory.mktemp("data"))
    cache = tmp_path_factory.mktemp("cache")
    entries = list_videos(get_dataset("demo", root))
    s = extract.Settings(weights="random")
    summary = graph.run(entries, cache, "demo", s, scheduler=cluster.scheduler_address, progress=False,
                        echo=lambda *a: None)
    return root, cache, entries, s, summary


def test_schema_one_row_per_decoded_frame(built):
    import cv2

    root, cache, _, _, summary = built
    idx = store.read_index(cache, "demo").set_index("video")
    for vid, n in FRAMES.items():
        assert idx.loc[vid, "status"] == "done"
        cap = cv2.VideoCapture(str(root / "videos" / "train" / f"{vid}.mp4"))
        decoded = 0
        while cap.read()[0]:
            decoded += 1
        assert decoded == n == idx.loc[vid, "n_frames"]
        g = store.open_video(cache, "demo", vid)
        assert g.attrs["status"] == "done"
        for name in store.REQUIRED:
            dtype, shape = store.SCHEMA[name]
            assert g[name].dtype == np.dtype(dtype), name
            assert g[name].shape == (n, *shape), name
            assert g[name].chunks[0] == store.CHUNK_T
        valid = g["valid"][:]
        assert valid.mean() > 0.9
        assert np.isnan(g["landmarks"][:][~valid]).all() and not np.isnan(g["landmarks"][:][valid]).any()
        assert np.abs(g["dphase_s0"][1:][valid[1:] & valid[:-1]]).max() > 0   # real motion features
        assert not np.any(g["dphase_s0"][0])                                    # row 0 is zero
        np.testing.assert_allclose(g["labels"][:, 0], np.loadtxt(root / "annotations/train/arousal" / f"{vid}.txt"),
                                   atol=1e-6)
        assert np.abs(g["resnet50"][:][valid]).sum(axis=1).min() > 0


def test_bad_videos_fail_alone_with_messages(built):
    _, cache, _, _, summary = built
    idx = store.read_index(cache, "demo").set_index("video")
    assert idx.loc["corrupt", "status"] == "failed" and "corrupt.mp4" in idx.loc["corrupt", "error"]
    assert idx.loc["empty", "status"] == "failed" and "empty" in idx.loc["empty", "error"]
    err = idx.loc["short_labels", "error"]
    assert "35" in err and "40" in err and "short_labels.txt" in err
    for vid in ("corrupt", "empty", "short_labels"):
        assert store.group_status(cache, "demo", vid) is None    # no partial group left behind
    assert len(summary.failed) == 3 and summary.count("full") == 2


def test_rerun_skips_done_and_retries_failed(built, cluster):
    _, cache, entries, s, _ = built
    stamp = {v: (store.video_dir(cache, "demo", v) / "zarr.json").stat().st_mtime_ns for v in FRAMES}
    again = graph.run(entries, cache, "demo", s, scheduler=cluster.scheduler_address, progress=False,
                      echo=lambda *a: None)
    assert again.count("skip") == 2 and len(again.failed) == 3 and again.count("full") == 0
    for v in FRAMES:
        assert (store.video_dir(cache, "demo", v) / "zarr.json").stat().st_mtime_ns == stamp[v]


def test_motion_setting_recomputes_only_motion_without_video(built, cluster, tmp_path):
    import shutil

    _, cache, entries, s, _ = built
    work = tmp_path / "cache"
    shutil.copytree(cache, work)
    good = [e for e in entries if e.video in FRAMES]
    # the videos are gone: any attempt to open one would fail the update
    moved = [e.__class__(e.video, tmp_path / "gone" / e.path.name, e.split, e.label_files) for e in good]
    before = {v: {n: store.open_video(work, "demo", v)[n][:] for n in ("dphase_s0", "resnet50", "face48")}
              for v in FRAMES}
    # a changed motion setting is a named variant: dphase@mw9 is added beside the default dphase
    s2 = extract.Settings(weights="random", motion={"mean_window": 9}, motion_variant="mw9")
    out = graph.run(moved, work, "demo", s2, scheduler=cluster.scheduler_address, progress=False,
                    echo=lambda *a: None)
    assert out.count("update") == 2 and not out.failed
    for r in out.rows:
        assert r["decoded"] == 0                      # no frame was decoded
    for v in FRAMES:
        g = store.open_video(work, "demo", v)
        assert not np.array_equal(g["dphase_s0@mw9"][:], before[v]["dphase_s0"])
        np.testing.assert_array_equal(g["dphase_s0"][:], before[v]["dphase_s0"])   # the default is untouched
        np.testing.assert_array_equal(g["resnet50"][:], before[v]["resnet50"])
        np.testing.assert_array_equal(g["face48"][:], before[v]["face48"])
        fps = store.video_fingerprints(work, "demo", v)
        want = extract.fingerprints(s2, moved[0])
        assert {n: fps[n] for n in want if n != "labels"} == {n: fp for n, fp in want.items() if n != "labels"}
        assert fps["dphase_s0"] != fps["dphase_s0@mw9"]
    again = graph.run(moved, work, "demo", s2, scheduler=cluster.scheduler_address, progress=False,
                      echo=lambda *a: None)
    assert again.count("skip") == 2


def test_sigkill_then_rerun_equals_uninterrupted(built, tmp_path):
    root, ref_cache, *_ = built
    cache = tmp_path / "cache"
    cmd = [sys.executable, str(ROOT / "cli.py"), "features", "--dataset", "demo", "--root", str(root),
           "--cache", str(cache), "--weights", "random", "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # kill once good_a's group is being written but not finished
    while time.time() < deadline and store.group_status(cache, "demo", "good_a") in (None, "partial"):
        time.sleep(0.05)
    assert store.group_status(cache, "demo", "good_a") == "writing"
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.group_status(cache, "demo", "good_a") != "done"
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 1            # the three bad videos still fail
    assert "failed: 3" in rerun.stdout
    for v in FRAMES:
        a, b = store.open_video(cache, "demo", v), store.open_video(ref_cache, "demo", v)
        for name in store.REQUIRED:
            np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=f"{v}/{name}")
