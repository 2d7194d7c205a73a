"""A failed or killed update leaves every array complete under one fingerprint or visibly unusable; reruns repair.

Real failures on a real cache: a corrupted face48 chunk file met half-way through an update, and a SIGKILL of the
CLI while an update's new arrays are being built. The variant `mw` (ΔPhase with a local mean) is recomputed with
other settings (--replace-variant), the case where an old array would be rewritten.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from synth_video import write_face_video

from pipeline import compute, extract, graph, settings, store
from pipeline.manifest import get_dataset, list_videos

ROOT = Path(__file__).resolve().parent.parent
N = 560   # three cache chunks (256 + 256 + 48): an update has chunks left to do after its first


def _settings(mean_window: int) -> extract.Settings:
    return extract.Settings(stages=("align", "motion"), weights="random", motion={"mean_window": mean_window},
                            motion_variant="mw")


def _dphase(cache, video: str, mean_window: int) -> dict[str, np.ndarray]:
    """dphase@mw recomputed from the group's own faces, the way the pipeline does (the expected arrays)."""
    comp = compute.MotionComputer("dphase", "mw", {"mean_window": mean_window})
    parts = [comp(b) for b in compute.group_blocks(cache, "demo", video, ["valid", "face48"], lambda k: None)]
    return {n: np.concatenate([p[n] for p in parts]).astype(np.float16) for n in parts[0]}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    vids = root / "videos" / "train"
    vids.mkdir(parents=True)
    write_face_video(vids / "long.mp4", N, size=(320, 240), motion="translate_rotate", seed=3)
    for dim in ("arousal", "valence"):
        d = root / "annotations" / "train" / dim
        d.mkdir(parents=True, exist_ok=True)
        np.savetxt(d / "long.txt", np.random.default_rng(1).uniform(-1, 1, N), fmt="%.5f")
    cache = tmp_path_factory.mktemp("cache")
    entries = list_videos(get_dataset("demo", root))
    summary = graph.run(entries, cache, "demo", _settings(9), workers=1, progress=False, echo=lambda *a: None)
    assert not summary.failed
    g = store.open_video(cache, "demo", "long")
    before = {n: g[n][:] for n in ("face48", "dphase_s0@mw", "dphase_s1@mw")}
    return root, cache, entries, before, dict(g.attrs["fingerprints"])


def _copy(cache: Path, tmp_path: Path) -> Path:
    work = tmp_path / "cache"
    shutil.copytree(cache, work)
    return work


def test_corrupt_chunk_mid_update_keeps_old_arrays_and_rerun_repairs(base, tmp_path):
    root, cache, entries, before, fps_before = base
    work = _copy(cache, tmp_path)
    chunk = store.video_dir(work, "demo", "long") / "face48" / "c" / "1" / "0" / "0"
    chunk.write_bytes(b"\0" * 64 + chunk.read_bytes()[64:])         # frames 256..511 no longer decode
    out = graph.run(entries, work, "demo", _settings(5), workers=1, progress=False, echo=lambda *a: None,
                    replace_variant=True)
    assert len(out.failed) == 1 and "face48" in out.failed[0]["error"]
    g = store.open_video(work, "demo", "long")
    fps = dict(g.attrs["fingerprints"])
    assert g.attrs["status"] == "done"
    for name in ("dphase_s0@mw", "dphase_s1@mw"):   # the old arrays, whole, under their old fingerprints
        np.testing.assert_array_equal(g[name][:], before[name])
        assert fps[name] == fps_before[name]
    assert store.check_arrays(work, "demo", "long", ["dphase_s0@mw", "dphase_s1@mw", "valid"])
    assert fps["face48"] == "damaged"
    with pytest.raises(store.UnusableVideo, match="face48 is damaged.*cli.py features --dataset demo"):
        store.check_arrays(work, "demo", "long", ["face48"])
    row = store.read_index(work, "demo").set_index("video").loc["long"]
    assert json.loads(row.fingerprints) == fps                   # the index row is the group's truth
    assert "face48" in row.error
    assert not list((store.dataset_dir(work, "demo") / ".staging").glob("long.*"))   # nothing half-built left

    again = graph.run(entries, work, "demo", _settings(5), workers=1, progress=False, echo=lambda *a: None,
                      replace_variant=True)
    assert not again.failed and again.rows[0]["action"] == "full"   # damaged faces: rebuilt from the video
    g = store.open_video(work, "demo", "long")
    np.testing.assert_array_equal(g["face48"][:], before["face48"])
    for name, expected in _dphase(work, "long", 5).items():
        np.testing.assert_array_equal(g[name][:], expected)
    want = settings.fingerprints(_settings(5), entries[0])
    assert {n: g.attrs["fingerprints"][n] for n in want} == want
    assert store.check_arrays(work, "demo", "long", list(want))


def test_sigkill_during_update_keeps_old_arrays_and_rerun_takes_the_lock_over(base, tmp_path):
    root, cache, entries, before, fps_before = base
    work = _copy(cache, tmp_path)
    cmd = [sys.executable, str(ROOT / "cli.py"), "features", "--dataset", "demo", "--root", str(root),
           "--cache", str(work), "--stages", "align,motion", "--motion-variant", "mw", "--motion-mean-window", "5",
           "--replace-variant", "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    staging = store.dataset_dir(work, "demo") / ".staging"
    deadline = time.time() + 300
    # kill once the new dphase@mw has its first chunk built beside the group, with two chunks to go
    while time.time() < deadline and not list(staging.glob("long.*/dphase_s0@mw/c/0/0/0/0")):
        time.sleep(0.02)
    assert list(staging.glob("long.*/dphase_s0@mw/c/0/0/0/0")), "the update never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    g = store.open_video(work, "demo", "long")
    assert g.attrs["status"] == "done"
    for name in ("dphase_s0@mw", "dphase_s1@mw"):
        assert g.attrs["fingerprints"][name] == fps_before[name]
        np.testing.assert_array_equal(g[name][:], before[name])
    store.check_arrays(work, "demo", "long", ["dphase_s0@mw", "dphase_s1@mw"])
    assert (work / "demo" / "features.lock").is_file()          # the killed run's lock is left behind

    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "took over the lock" in rerun.stdout and f"pid {proc.pid}" in rerun.stdout
    g = store.open_video(work, "demo", "long")
    for name, expected in _dphase(work, "long", 5).items():
        np.testing.assert_array_equal(g[name][:], expected)
    want = settings.fingerprints(_settings(5), entries[0])
    assert {n: g.attrs["fingerprints"][n] for n in want} == want
    assert not (work / "demo" / "features.lock").exists()       # released at the end
