"""A video resumes mid-way from its last complete block (pipeline/resume.py) and writes what an uninterrupted run does.

Real videos (OpenCV), the real dlib tracker, a real Zarr cache; the kills are real SIGKILLs of a `features` process and
of a LocalCluster worker. The in-process interruption (`Killed`, raised from the progress callback) stands for a kill
at a chosen frame: nothing in the pipeline catches it, as nothing runs after a SIGKILL.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from small_disk import mount_tmpfs, unmount
from synth_video import write_face_video

from pipeline import compute, extract, graph, resume, store
from pipeline.manifest import VideoEntry, videos_from_files

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 300       # longer than a default block (256): its last frame is compared too
GAP = (100, 110)      # no face: the smoother's and ΔPhase's restarts, a re-detection


class Killed(BaseException):
    """Stops an extraction where a kill would (not an Exception: the pipeline's failure handling never sees it)."""


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> VideoEntry:
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    write_face_video(path, FRAMES, size=(320, 240), motion="translate_rotate", no_face=GAP, seed=3)
    return VideoEntry("v", path, "train", {})


def _settings(chunk: int, **kw) -> extract.Settings:
    """Every stateful part: tracker, smoother, the paper ΔPhase (turns), phase, flow, per-frame gamma jitter, and the
    variants computed from the mirrored faces (a computer fed transformed faces)."""
    return extract.Settings(**{"weights": "random", "stages": ("align", "motion"), "extras": ("phase", "flow", "flip"),
                               "motion_variant": "paper", "motion": {"variant": "paper"}, "gamma_jitter": 0.1,
                               "chunk_frames": chunk, **kw})


def _extract(cache: Path, entry: VideoEntry, s: extract.Settings, stop_after: int | None = None) -> dict | None:
    """Extract one video in this process; with stop_after, stop once that many frames were decoded (None)."""
    seen = 0

    def report(k: int) -> None:
        nonlocal seen
        seen += k
        if stop_after is not None and seen >= stop_after:
            raise Killed

    try:
        return extract.process_video(str(cache), "d", entry, s, report=report)
    except Killed:
        return None


def _assert_same_arrays(cache: Path, ref: Path, dataset: str, video: str) -> None:
    g, r = store.open_video(cache, dataset, video), store.open_video(ref, dataset, video)
    assert sorted(g.array_keys()) == sorted(r.array_keys())
    for name in r.array_keys():
        np.testing.assert_array_equal(g[name][:], r[name][:], err_msg=f"{video}/{name}")


@pytest.fixture(scope="module")
def reference(video, tmp_path_factory) -> Path:
    """The uninterrupted run, in blocks of 256."""
    cache = tmp_path_factory.mktemp("ref")
    row = _extract(cache, video, _settings(256))
    assert row["status"] == "done", row
    valid = store.open_video(cache, "d", "v")["valid"][:]
    assert not valid[GAP[0]:GAP[1]].any() and valid[:GAP[0]].mean() > 0.9 and valid[GAP[1]:].mean() > 0.9
    return cache


def test_a_resumed_video_equals_an_uninterrupted_run_bit_for_bit(video, reference, tmp_path):
    cache = tmp_path / "cache"
    # blocks of 64: stopped while the block 128..192 is under way, so 128 frames are saved
    assert _extract(cache, video, _settings(64), stop_after=192) is None
    assert store.group_status(cache, "d", "v") == "writing"
    assert resume.saved_frames(cache, "d", "v") == 128 and resume.partial_videos(cache, "d") == {"v": 128}
    with pytest.raises(store.UnusableVideo, match="not complete"):     # readers never take a partial group
        store.check_arrays(cache, "d", "v", ["face48"])

    s = _settings(96)     # another block size on the rerun: it changes nothing
    p = extract.plan(cache, "d", video, extract.fingerprints(s, video), s)
    assert p.action == "full" and p.resume["frames"] == 128 and "resumes at frame 128" in p.reason
    row = _extract(cache, video, s)
    assert row["status"] == "done" and row["resumed_from"] == 128 and row["decoded"] == FRAMES - 128
    g = store.open_video(cache, "d", "v")
    assert g.attrs["resumed_at"] == [128] and "progress" not in g.attrs and "writer" not in g.attrs
    _assert_same_arrays(cache, reference, "d", "v")
    assert resume.partial_videos(cache, "d") == {}


def test_a_partial_video_made_under_other_settings_starts_over_and_says_why(video, tmp_path):
    cache = tmp_path / "cache"
    assert _extract(cache, video, _settings(64), stop_after=100) is None
    assert resume.saved_frames(cache, "d", "v") == 64
    s = _settings(64, gamma_jitter=0.2)
    p = extract.plan(cache, "d", video, extract.fingerprints(s, video), s)
    assert p.resume is None
    assert "started over" in p.reason and "face48 fingerprint" in p.reason, p.reason
    # a changed video file (another one, same name and frames): its identity differs
    other = tmp_path / "v.mp4"
    write_face_video(other, FRAMES, size=(320, 240), motion="translate_rotate", no_face=GAP, seed=4)
    s = _settings(64)
    changed = VideoEntry("v", other, "train", {})
    p = extract.plan(cache, "d", changed, extract.fingerprints(s, changed), s)
    assert p.resume is None and "source" in p.reason, p.reason


def test_a_partial_video_resumes_across_a_new_mtime_and_an_old_style_identity(video, tmp_path):
    """Its identity follows the file's contents: a new mtime alone (a copy) resumes, where it started over; a record
    made before, holding [size, int(mtime)], resumes while that still matches the file, and not once it does not."""
    cache = tmp_path / "cache"
    assert _extract(cache, video, _settings(64), stop_after=100) is None
    s = _settings(64)
    os.utime(video.path, (time.time(), time.time() + 10))
    p = extract.plan(cache, "d", video, extract.fingerprints(s, video), s)
    assert p.resume is not None and p.resume["frames"] == 64, p.reason
    g = store.open_video(cache, "d", "v", mode="r+")
    st = video.path.stat()
    for legacy, resumes in (([st.st_size, int(st.st_mtime)], True), ([st.st_size, int(st.st_mtime) - 1], False)):
        rec = dict(g.attrs[resume.KEY])
        g.attrs[resume.KEY] = {**rec, "identity": {**rec["identity"], "source": legacy}}
        p = extract.plan(cache, "d", video, extract.fingerprints(s, video), s)
        assert (p.resume is not None) == resumes, p.reason
        assert resumes or ("started over" in p.reason and "source" in p.reason), p.reason


@pytest.mark.slow
def test_resnet50_rows_do_not_depend_on_the_blocks():
    """Its batches are fixed by frame number: blocks of 32 give the rows of one block of 64, bit for bit, also with
    invalid frames (before, a block's valid faces were batched in order, so the batches moved with the blocks; on
    CPU a batch of fewer than 16 faces rounds differently)."""
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (64, 224, 224, 3), dtype=np.uint8)
    valid = np.ones(64, bool)
    valid[2:24] = False     # 10 faces in frames 0..31
    comp = compute.SpatialComputer(extract.Settings(weights="random"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # as on a worker (Settings.threads)
    try:
        whole = comp({"valid": valid, "face224": faces})["resnet50"]
        parts = [comp({"valid": valid[a:a + 32], "face224": faces[a:a + 32]})["resnet50"] for a in (0, 32)]
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not whole[~valid].any() and whole[valid].any(axis=1).all()


def _cli(cache: Path, video: Path, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "features", str(video), "--cache", str(cache), "--weights", "random",
            "--stages", "align,motion", "--workers", "1", "--no-progress", *args]


def _kill_once_a_block_is_saved(cmd: list[str], cache: Path, cwd: Path) -> None:
    """Run a `features` command and SIGKILL it (its workers too) once video v has a saved block (in place or in a
    rebuild beside its group), or once it ends on its own."""
    proc = subprocess.Popen(cmd, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None and not resume.saved_frames(cache, "videos", "v"):
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()


@pytest.mark.slow
def test_sigkill_mid_video_then_rerun_resumes_and_equals_uninterrupted(video, tmp_path):
    """A real `features` process (LocalCluster) killed mid-video: the rerun starts at the saved block, not frame 0."""
    entry = videos_from_files([video.path])[0]
    ref = tmp_path / "ref"
    assert extract.process_video(str(ref), "videos", entry, extract.Settings(weights="random",
                                 stages=("align", "motion")))["status"] == "done"
    cache = tmp_path / "cache"
    cmd = _cli(cache, video.path, "--chunk-frames", "64")
    _kill_once_a_block_is_saved(cmd, cache, tmp_path)
    saved = resume.saved_frames(cache, "videos", "v")
    assert saved > 0 and store.group_status(cache, "videos", "v") == "writing", "killed before a block was saved"
    rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"v: resumes at frame {saved} (partial group)" in rerun.stdout, rerun.stdout
    assert "(1 resumed mid-way)" in rerun.stdout, rerun.stdout
    g = store.open_video(cache, "videos", "v")
    assert g.attrs["status"] == "done" and g.attrs["resumed_at"] == [saved]
    _assert_same_arrays(cache, ref, "videos", "v")


@pytest.mark.slow
def test_a_full_disk_mid_video_keeps_the_saved_blocks_and_the_rerun_resumes(video, tmp_path):
    """The cache's disk fills up mid-video (a real tmpfs smaller than the video's arrays): the video fails saying
    why and how many frames it kept; with space again the rerun resumes at the saved block and equals an
    uninterrupted run. (Before: the failure deleted the group with its saved blocks, which also freed the space and
    hid the cause, and the rerun started the video at frame 0.)"""
    entry = videos_from_files([video.path])[0]
    ref = tmp_path / "ref"
    assert extract.process_video(str(ref), "videos", entry, extract.Settings(weights="random",
                                 stages=("align", "motion")))["status"] == "done"
    need = sum(f.stat().st_size for f in (ref / "videos").rglob("*") if f.is_file()) // 1024
    disk = tmp_path / "disk"
    disk.mkdir()
    if not mount_tmpfs(disk, need * 6 // 10):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        cache = disk / "cache"
        cmd = _cli(cache, video.path, "--chunk-frames", "32")
        full = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        saved = resume.saved_frames(cache, "videos", "v")
        assert "No space left on device" in full.stdout, full.stdout + full.stderr
        assert saved > 0 and store.group_status(cache, "videos", "v") == "writing", full.stdout
        assert f"({saved} frames saved: the next `features` run resumes there)" in full.stdout, full.stdout
        index = store.read_index(cache, "videos")
        assert index["error"][0].count("frames saved") == 1, index["error"][0]
        assert mount_tmpfs(disk, need * 3, remount=True)
        rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert f"v: resumes at frame {saved} (partial group)" in rerun.stdout, rerun.stdout
        _assert_same_arrays(cache, ref, "videos", "v")
    finally:
        unmount(disk)


@pytest.mark.slow
def test_a_force_run_killed_mid_video_keeps_the_done_group_and_resumes_its_rebuild(video, tmp_path):
    """`features --force` removed every group before extracting: killed mid-video (a batch job expiring), the video
    it was on and every one after it were left without arrays. Now a done group is rebuilt beside itself: after the
    kill it is still done, its arrays as they were; the next `--force` run resumes the rebuild at its saved block and
    ends with what an uninterrupted run makes."""
    cache = tmp_path / "cache"
    cmd = _cli(cache, video.path, "--chunk-frames", "64")
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    ref = tmp_path / "ref"
    shutil.copytree(cache, ref)
    _kill_once_a_block_is_saved([*cmd, "--force"], cache, tmp_path)
    saved = resume.saved_frames(cache, "videos", "v")
    assert saved > 0, "killed before a block of the rebuild was saved"
    assert store.group_status(cache, "videos", "v") == "done"   # readers still have the video
    _assert_same_arrays(cache, ref, "videos", "v")
    rerun = subprocess.run([*cmd, "--force"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"v: --force: rebuilt; resumes at frame {saved}" in rerun.stdout, rerun.stdout
    _assert_same_arrays(cache, ref, "videos", "v")
    # the run's token is in the group: a task Dask runs again in that run (its worker left after the swap) skips it
    entry, s = videos_from_files([video.path])[0], extract.Settings(weights="random", stages=("align", "motion"))
    token = store.open_video(cache, "videos", "v").attrs["forced_by"]
    assert extract.plan(cache, "videos", entry, extract.fingerprints(s, entry), s, force=token).action == "skip"
    again = extract.plan(cache, "videos", entry, extract.fingerprints(s, entry), s, force="another run")
    assert (again.action, again.beside, again.forced_by) == ("full", True, "another run")


@pytest.mark.slow
def test_a_worker_lost_after_saving_blocks_is_not_a_failing_video(video, reference, tmp_path):
    """--retries 0, and the worker extracting the video is SIGKILLed after it saved a block: the video resumes on the
    restarted worker and finishes (a loss counts only when the video saved nothing new)."""
    from distributed import Client, LocalCluster

    cache, lines = tmp_path / "cache", []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        with Client(cluster) as client:
            pid = next(iter(client.run(os.getpid).values()))

        def kill_after_a_block():
            deadline = time.time() + 600
            while time.time() < deadline and not resume.saved_frames(cache, "d", "v"):
                time.sleep(0.02)
            os.kill(pid, signal.SIGKILL)

        helper = threading.Thread(target=kill_after_a_block, daemon=True)
        helper.start()
        summary = graph.run([video], cache, "d", _settings(64), scheduler=cluster.scheduler_address, progress=False,
                            echo=lines.append, cluster_opts={"retries": 0})
        helper.join()
    assert not summary.failed and summary.stopped is None, (summary.rows, lines)
    assert any("left after saving frames 0.." in line and "resumes from its last saved block" in line
               for line in lines), lines
    g = store.open_video(cache, "d", "v")
    assert g.attrs["resumed_at"][0] > 0
    _assert_same_arrays(cache, reference, "d", "v")


@pytest.fixture(scope="module")
def two_people(tmp_path_factory):
    """Aff-Wild2's layout; the two-person video's OpenFace CSV is one multi-face CSV (followed by side)."""
    from affwild2_layout import build_affwild2_layout
    from openface_csv import write_openface_csv

    from pipeline.manifest import get_dataset, list_videos

    layout = build_affwild2_layout(tmp_path_factory.mktemp("affwild2"))
    pair = [layout.entries[f"5-30-480x240_{side}"] for side in ("left", "right")]
    for e in pair:
        e.openface_csv.unlink()
    write_openface_csv(layout.openface_dir / "5-30-480x240.csv",
                       [(e.csv_landmarks, np.isfinite(e.csv_landmarks[:, 0, 0])) for e in pair], shuffle_ids=True,
                       seed=1)
    entries = {e.video: e for e in list_videos(get_dataset("affwild2", root=layout.root))}
    return layout, entries["5-30-480x240_right"]


@pytest.mark.parametrize("faces", ["video", "openface", "cropped_aligned"])
def test_every_face_source_resumes_exactly(two_people, tmp_path, faces):
    """The right person of a two-person video, resumed at frame 64: Grace Hopper leaves at 72 while the astronaut is
    alone in the right half, so only the partner remembered at the detection of frame 60 (the tracker's, or the
    multi-face CSV reader's, side state) keeps the astronaut out. The crops resume at the video's very end. The
    crop folder or CSV is moved before the rerun (a dataset copied to a node's scratch): its contents are the same, so
    the video resumes, where it started over while the face input's path was part of what a resume compared."""
    layout, entry = two_people
    folder = {"video": None, "openface": layout.openface_dir, "cropped_aligned": layout.crops_dir}[faces]

    def settings(chunk, where=folder):
        return extract.Settings(weights="random", stages=("align", "motion"), motion_variant="paper",
                                motion={"variant": "paper"}, faces=faces, faces_dir=where and str(where),
                                label_slack=1, chunk_frames=chunk)

    ref, cache = tmp_path / "ref", tmp_path / "cache"
    assert _extract(ref, entry, settings(256))["status"] == "done"
    assert _extract(cache, entry, settings(32), stop_after=96) is None
    saved = resume.saved_frames(cache, "d", entry.video)
    assert saved == (96 if faces == "cropped_aligned" else 64)
    moved = folder and shutil.copytree(folder, tmp_path / "moved" / folder.name)
    row = _extract(cache, entry, settings(64, moved))
    assert row["status"] == "done" and row["resumed_from"] == saved
    _assert_same_arrays(cache, ref, "d", entry.video)
    assert store.open_video(cache, "d", entry.video)["valid"][:].sum() > 40
