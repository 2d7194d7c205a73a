"""Clusters of `features` without a batch system: where the dashboard listens, worker lifetimes, lost workers.

Real LocalClusters, real sockets (psutil), real videos and a real Zarr cache; test_slurm.py does the same on SLURM.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from synth_video import write_face_video

from features.errors import BadInputError
from pipeline import extract, graph, store
from pipeline.cluster import batch_cluster, lifetime_args, make_cluster, parse_dashboard, parse_duration, worker_lifetime
from pipeline.manifest import get_dataset, list_videos


def _listening(port: int) -> set[str]:
    """The addresses this process listens on at `port`."""
    return {c.laddr.ip for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_local_dashboard_listens_on_localhost_only_unless_asked():
    cluster = make_cluster("local", 1)
    try:
        port = cluster.scheduler.http_server.port
        assert _listening(port) == {"127.0.0.1"}
    finally:
        cluster.close()
    cluster = make_cluster("local", 1, opts={"dashboard": "0.0.0.0:0"})
    try:
        assert _listening(cluster.scheduler.http_server.port) == {"0.0.0.0"}
    finally:
        cluster.close()


def test_batch_dashboard_is_private_and_workers_retire_before_the_walltime():
    """Building a SLURMCluster submits nothing, so this runs without SLURM."""
    pytest.importorskip("dask_jobqueue")
    opts = {"cores": 1, "memory": "3GB", "walltime": "01:00:00", "processes": 2}
    cluster = batch_cluster("slurm", opts)
    try:
        assert _listening(cluster.scheduler.http_server.port) == {"127.0.0.1"}
        script = cluster.job_script()
    finally:
        cluster.close()
    # one worker process per core, whatever the manifest's `processes` (2 workers on 1 core before)
    assert "--nthreads 1" in script and "--nworkers" not in script, script
    args = lifetime_args("slurm", opts)
    assert " ".join(args) in script, script
    lifetime, stagger = float(args[1].rstrip("s")), float(args[3].rstrip("s"))
    assert 0 < stagger and lifetime + stagger < 3600 - 60


def test_durations_and_lifetimes():
    assert parse_duration("04:00:00") == 4 * 3600
    assert parse_duration("1-02:00:00") == 26 * 3600
    assert parse_duration("30", "slurm") == 1800 and parse_duration("30", "pbs") == 30
    assert parse_duration("10:00", "slurm") == 600 and parse_duration("10:00", "lsf") == 36000
    assert parse_duration("50m") == 3000 and parse_duration("90s") == 90
    with pytest.raises(BadInputError, match="--walltime 'soon'"):
        parse_duration("soon")
    for walltime in (60, 600, 3600, 4 * 3600, 48 * 3600):
        lifetime, stagger = worker_lifetime(walltime)
        assert walltime / 2 <= lifetime - stagger and lifetime + stagger <= walltime - 10
    assert parse_dashboard(None) == ("127.0.0.1", 0)
    assert parse_dashboard(":8787") == ("0.0.0.0", 8787) and parse_dashboard("8787") == ("127.0.0.1", 8787)
    with pytest.raises(BadInputError, match="HOST:PORT"):
        parse_dashboard("localhost:port")


# ---------------------------------------------------------------- lost workers on a LocalCluster


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("data")
    vids = root / "videos" / "train"
    vids.mkdir(parents=True)
    # Dask runs them in submission order on one worker; the second is long enough that a worker retired once the
    # first is done cannot finish it first
    for i, (name, frames) in enumerate((("first", 40), ("second", 160))):
        write_face_video(vids / f"{name}.mp4", frames, size=(320, 240), motion="translate_rotate", seed=i)
    return root, list_videos(get_dataset("demo", root))


def _wait_for(predicate, seconds: float = 300.0) -> None:
    deadline = time.time() + seconds
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_no_worker_coming_back_stops_the_run_and_keeps_what_finished(two_videos, tmp_path):
    """The only worker leaves after the first video: the run stops after --worker-timeout with a message, the index
    holds the finished video. (Before: it waited forever, printing nothing.)"""
    from distributed import LocalCluster

    root, entries = two_videos
    cache, lines = tmp_path / "cache", []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        retired = threading.Event()

        def retire_after_first():
            _wait_for(lambda: any(store.group_status(cache, "demo", e.video) == "done" for e in entries), 900)
            cluster.scale(0)
            retired.set()

        helper = threading.Thread(target=retire_after_first, daemon=True)
        helper.start()
        result = {}

        def features():
            try:
                result["summary"] = graph.run(entries, cache, "demo", extract.Settings(weights="random"),
                                              scheduler=cluster.scheduler_address, progress=False, echo=lines.append,
                                              cluster_opts={"worker_timeout": "5s"})
            except Exception as err:     # shown by the assertion below
                result["error"] = err

        run = threading.Thread(daemon=True, target=features)
        run.start()
        _wait_for(lambda: retired.is_set() or not run.is_alive(), 900)     # the first video, however loaded the machine
        run.join(timeout=120)
        assert not run.is_alive(), "the run still waits for a worker 2 minutes after the last one left"
        helper.join(timeout=10)
    assert "summary" in result, f"{result.get('error')!r}; printed: {lines}"
    summary = result["summary"]
    assert summary.stopped and "no Dask worker for" in summary.stopped and "has no workers" in summary.stopped
    index = store.read_index(cache, "demo")
    assert list(index["status"]) == ["done"] and len(summary.rows) == 1


@pytest.mark.slow
def test_a_video_whose_worker_dies_too_often_fails_with_the_reason(two_videos, tmp_path):
    """--retries 0: the worker extracting a video is killed (SIGKILL, like the OOM killer): that video is recorded
    failed with why, the other one still finishes on the restarted worker. (Before: Dask retried it silently.)"""
    from distributed import Client, LocalCluster

    root, entries = two_videos
    cache = tmp_path / "cache"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        pid = next(iter(Client(cluster).run(os.getpid).values()))

        def kill_mid_video():
            _wait_for(lambda: any(store.group_status(cache, "demo", e.video) == "writing" for e in entries))
            os.kill(pid, signal.SIGKILL)

        helper = threading.Thread(target=kill_mid_video, daemon=True)
        helper.start()
        summary = graph.run(entries, cache, "demo", extract.Settings(weights="random"),
                            scheduler=cluster.scheduler_address, progress=False, echo=lambda *a: None,
                            cluster_opts={"retries": 0})
        helper.join()
    assert summary.stopped is None
    failed = summary.failed
    assert len(failed) == 1 and "its worker died once" in failed[0]["error"], summary.rows
    assert sum(r.get("status") == "done" for r in summary.rows) == 1
