"""One `features` run at a time per cache and dataset: the lock file, its takeover, and two real CLI processes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from synth_video import write_face_video

import cli
from pipeline import lock as L
from pipeline import store

ROOT = Path(__file__).resolve().parent.parent


def _write(path: Path, **record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"token": "t0", "started": "2026-01-01T00:00:00", **record}))


def test_a_held_lock_is_refused_naming_the_holder_then_released(tmp_path):
    a = L.FeaturesLock(tmp_path, "demo").acquire()
    with pytest.raises(L.CacheBusy) as e:
        L.FeaturesLock(tmp_path, "demo").acquire()
    msg = str(e.value)
    assert f"host {socket.gethostname()}" in msg and f"pid {os.getpid()}" in msg and a.record["started"] in msg
    assert "--wait-for-lock" in msg
    a.release()
    L.FeaturesLock(tmp_path, "demo").acquire().release()
    assert not L.lock_path(tmp_path, "demo").exists()


def test_a_waiting_run_gets_the_lock_when_it_is_released(tmp_path):
    a = L.FeaturesLock(tmp_path, "demo").acquire()
    threading.Timer(1.5, a.release).start()
    said = []
    b = L.FeaturesLock(tmp_path, "demo").acquire(wait_s=60, echo=said.append)
    assert any("waiting up to 60 s" in s for s in said)
    assert L.read_lock(b.path)["token"] == b.record["token"]
    b.release()


def test_a_bounded_wait_ends_with_the_holders_name(tmp_path):
    a = L.FeaturesLock(tmp_path, "demo").acquire()
    t0 = time.monotonic()
    with pytest.raises(L.CacheBusy, match=f"pid {os.getpid()}"):
        L.FeaturesLock(tmp_path, "demo").acquire(wait_s=1.5, echo=lambda *x: None)
    assert 1.4 < time.monotonic() - t0 < 10
    a.release()


def test_same_host_lock_of_a_gone_or_reused_pid_is_taken_over(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = L.lock_path(tmp_path, "demo")
    for pid, started in ((int(gone.stdout), 0), (os.getpid(), 12345.0)):   # exited; a live pid started later
        _write(path, host=socket.gethostname(), pid=pid, pid_started=started, heartbeat=time.time())
        said = []
        L.FeaturesLock(tmp_path, "demo").acquire(echo=said.append).release()
        assert any("took over" in s and f"pid {pid}" in s for s in said)


def test_other_host_lock_is_stale_only_after_its_heartbeat_stops(tmp_path):
    path = L.lock_path(tmp_path, "demo")
    _write(path, host="elsewhere.cluster", pid=4242, heartbeat=time.time() - 5)
    with pytest.raises(L.CacheBusy, match="host elsewhere.cluster, pid 4242"):
        L.FeaturesLock(tmp_path, "demo").acquire()
    _write(path, host="elsewhere.cluster", pid=4242, heartbeat=time.time() - L.STALE_AFTER_S - 5)
    said = []
    L.FeaturesLock(tmp_path, "demo").acquire(echo=said.append).release()
    assert any("took over" in s for s in said)


def test_the_client_refreshes_its_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "HEARTBEAT_S", 0.2)
    a = L.FeaturesLock(tmp_path, "demo").acquire()
    first = L.read_lock(a.path)["heartbeat"]
    time.sleep(1.0)
    assert L.read_lock(a.path)["heartbeat"] > first + 0.3
    a.release()


def test_two_real_cli_runs_on_one_cache(tmp_path):
    """A long run holds the cache; a second without --wait-for-lock stops naming it; a third waits, then runs.

    Both videos end up in the index: no run lost the other's row.
    """
    long_video, short = tmp_path / "long.avi", tmp_path / "short.avi"
    write_face_video(long_video, 900, size=(320, 240), fourcc="MJPG", seed=0)
    write_face_video(short, 30, size=(320, 240), fourcc="MJPG", seed=1)
    cache = tmp_path / "cache"
    base = [sys.executable, str(ROOT / "cli.py"), "features", "--cache", str(cache), "--stages", "align",
            "--workers", "1", "--no-progress"]
    first = subprocess.Popen([*base, str(long_video)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    lock = L.lock_path(cache, "videos")
    deadline = time.time() + 300
    while time.time() < deadline and not lock.is_file() and first.poll() is None:
        time.sleep(0.05)
    assert lock.is_file(), first.communicate()[0]
    refused = CliRunner().invoke(cli.main, ["features", str(short), "--cache", str(cache), "--stages", "align",
                                            "--workers", "1", "--no-progress"])
    assert first.poll() is None, "the first run ended before the second tried: make its video longer"
    assert refused.exit_code == 2, refused.output
    assert "another features run" in refused.output and f"pid {first.pid}" in refused.output
    assert f"host {socket.gethostname()}" in refused.output
    waiting = subprocess.Popen([*base, str(short), "--wait-for-lock", "600"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    out_first, _ = first.communicate(timeout=600)
    out_wait, _ = waiting.communicate(timeout=600)
    assert first.returncode == 0, out_first
    assert waiting.returncode == 0, out_wait
    assert "waiting up to 600 s" in out_wait and f"pid {first.pid}" in out_wait
    idx = store.read_index(cache, "videos").set_index("video")
    assert set(idx.index) == {"long", "short"} and (idx.status == "done").all()
    assert not lock.exists()


def test_info_names_the_whole_command_of_a_killed_run(tmp_path):
    """A real `features` process with a long command line (a batch run's flags pass 200 characters) is SIGKILLed;
    `info --cache` says to rerun that command and shows it whole, quoted as a shell reads it. (Before: cut at 200
    characters with nothing to say so, e.g. ending `--walltime 00:1`, under "rerun that command".)"""
    import shlex
    import signal

    from pipeline.resume import saved_frames

    video = tmp_path / "a video.avi"    # a space: the command must come back quoted
    write_face_video(video, 900, size=(320, 240), fourcc="MJPG", seed=0)
    cache = tmp_path / "cache"
    argv = [str(ROOT / "cli.py"), "features", str(video), "--cache", str(cache), "--stages", "align", "--workers", "1",
            "--no-progress", "--worker-timeout", "00:30:00", "--retries", "3", "--label-slack", "0", "--seed", "0",
            "--chunk-frames", "32"]
    assert len(" ".join(argv)) > 200
    run = subprocess.Popen([sys.executable, *argv], cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    lock = L.lock_path(cache, "videos")
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not saved_frames(cache, "videos", "a video") and run.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert lock.is_file() and saved_frames(cache, "videos", "a video"), "it ended before it saved a block"
    info = CliRunner().invoke(cli.main, ["info", "--cache", str(cache)])
    assert info.exit_code == 0, info.output
    assert f"({shlex.join(argv)})): the next run takes it over" in info.output, info.output
    assert "rerun that command" in info.output


def test_info_names_the_lock_of_a_first_run_before_it_saved_a_block(tmp_path):
    """A first `features` run on a dataset, at work or killed before its first block: no index, no group. `info`
    said the cache was empty, not that a run holds it or what to rerun."""
    cache = tmp_path / "cache"
    held = L.FeaturesLock(cache, "demo", "cli.py features --dataset demo").acquire()   # a run at work
    try:
        info = CliRunner().invoke(cli.main, ["info", "--cache", str(cache)])
        assert "demo" in info.output and "a `features` run is at work on it now" in info.output, info.output
    finally:
        held.release()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write(L.lock_path(cache, "demo"), host=socket.gethostname(), pid=int(gone.stdout), pid_started=0,
           heartbeat=time.time(), command="cli.py features --dataset demo")   # as a killed run leaves it
    info = CliRunner().invoke(cli.main, ["info", "--cache", str(cache)])
    assert "lock left by a `features` run that was killed" in info.output and "rerun that command" in info.output, \
        info.output
