"""The stage graph: one Dask task chain per video, on a LocalCluster, an existing cluster, or a batch system.

Each task runs `extract.process_video`, which streams its video (bounded memory) and never raises for a bad
video. The client plans (what is done, what is stale), submits, shows progress over videos and frames, keeps
index.parquet current after every video, and prints a summary.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from features.errors import BadInputError
from pipeline import extract, store
from pipeline.manifest import VideoEntry

BATCH_SYSTEMS = ("slurm", "pbs", "sge", "lsf")
TOPIC = "mimamo-frames"


@dataclass
class Summary:
    """What a features run did."""

    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    dashboard: str | None = None

    def count(self, action: str) -> int:
        return sum(r.get("action") == action for r in self.rows)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r.get("status") == "failed"]

    @property
    def frames_per_second(self) -> float:
        decoded = sum(int(r.get("decoded") or 0) for r in self.rows)
        return decoded / self.seconds if self.seconds else 0.0

    def table(self) -> str:
        """A plain-text table: one line per video, then the totals."""
        lines = [f"{'video':28s} {'action':8s} {'status':7s} {'frames':>7s} {'sec':>7s}  error"]
        for r in sorted(self.rows, key=lambda r: r["video"]):
            lines.append(f"{r['video'][:28]:28s} {r.get('action', ''):8s} {str(r.get('status')):7s} "
                         f"{int(r.get('n_frames') or 0):7d} {float(r.get('seconds') or 0):7.1f}  {r.get('error') or ''}")
        lines.append(f"done: {self.count('full')} new, {self.count('update')} updated, {self.count('skip')} skipped "
                     f"(already done); failed: {len(self.failed)}; {self.frames_per_second:.1f} frames/s decoded "
                     f"in {self.seconds:.1f} s")
        return "\n".join(lines)


# ---------------------------------------------------------------- clusters


def make_cluster(scheduler: str, workers: int | None, threads: int = 1, opts: dict | None = None):
    """(cluster or None, client address or cluster) for --scheduler local | tcp://host:port | slurm|pbs|sge|lsf."""
    opts = dict(opts or {})
    if scheduler == "local":
        from distributed import LocalCluster

        n = workers or os.cpu_count() or 1
        # processes, not threads: dlib and OpenCV hold the GIL in places, and one crash must not take all.
        return LocalCluster(n_workers=n, threads_per_worker=threads, processes=True, dashboard_address=":0",
                            silence_logs=logging.ERROR)
    if scheduler.startswith(("tcp://", "tls://")):
        return None
    if scheduler in BATCH_SYSTEMS:
        return batch_cluster(scheduler, opts)
    raise BadInputError(None, f"unknown scheduler {scheduler!r}",
                        "use local, tcp://host:port (an existing cluster) or one of " + ", ".join(BATCH_SYSTEMS))


def batch_cluster(kind: str, opts: dict):
    """A dask-jobqueue cluster; jobs are requested by `scale`, so building one submits nothing."""
    try:
        import dask_jobqueue
    except ImportError:
        raise BadInputError(None, f"--scheduler {kind} needs dask-jobqueue", "pip install 'mimamo[cluster]'") from None
    cls = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}[kind]
    gpus = int(opts.get("gpus") or 0)
    kwargs = dict(cores=int(opts["cores"]), memory=str(opts["memory"]), walltime=str(opts["walltime"]),
                  processes=int(opts.get("processes") or 1), silence_logs=logging.ERROR)
    if opts.get("queue"):
        kwargs["queue"] = opts["queue"]
    if gpus:
        # GPU tasks ask for the GPU resource, so each worker runs one at a time on its card.
        kwargs["worker_extra_args"] = ["--resources", f"GPU={gpus}"]
        if kind == "slurm":
            kwargs["job_extra_directives"] = [f"--gres=gpu:{gpus}"]
        elif kind == "pbs":
            kwargs["resource_spec"] = f"select=1:ncpus={kwargs['cores']}:ngpus={gpus}:mem={kwargs['memory']}"
    return getattr(dask_jobqueue, cls)(**kwargs)


# ---------------------------------------------------------------- the run


def plan_all(entries: list[VideoEntry], cache: Path, dataset: str, s: extract.Settings):
    """Fingerprints and plan of every video, on the client (the weights file is hashed once, not per video)."""
    enc = extract.encoder_fingerprint(s) if "spatial" in s.stages else None
    wants = [extract.fingerprints(s, e, enc) for e in entries]
    return wants, [extract.plan(cache, dataset, e, w) for e, w in zip(entries, wants)]


def run(entries: list[VideoEntry], cache: str | Path, dataset: str, s: extract.Settings, *,
        scheduler: str = "local", workers: int | None = None, jobs: int = 1, cluster_opts: dict | None = None,
        dry_run: bool = False, progress: bool = True, echo=print) -> Summary:
    """Build or bring up to date the cache of these videos; per-video failures are recorded, not raised."""
    cache = Path(cache)
    wants, plans = plan_all(entries, cache, dataset, s)
    todo = [(e, p, w) for e, p, w in zip(entries, plans, wants) if p.action != "skip"]
    if dry_run:
        echo(describe_plan(entries, plans, cache, dataset, scheduler, workers))
        if scheduler in BATCH_SYSTEMS:
            echo("job script:\n" + batch_cluster(scheduler, cluster_opts or {}).job_script())
        return Summary()
    summary = Summary(rows=[_skip_row(cache, dataset, e, p) for e, p in zip(entries, plans) if p.action == "skip"])
    t0 = time.perf_counter()
    if todo:
        _submit_all(todo, cache, dataset, s, scheduler, workers, jobs, cluster_opts, summary, progress, echo)
    summary.seconds = time.perf_counter() - t0
    update_index(cache, dataset, summary.rows)
    return summary


def _submit_all(todo, cache, dataset, s, scheduler, workers, jobs, cluster_opts, summary, progress, echo):
    from distributed import Client, as_completed

    cluster = make_cluster(scheduler, workers, opts=cluster_opts)
    client = Client(cluster if cluster is not None else scheduler)
    try:
        if scheduler in BATCH_SYSTEMS:
            cluster.scale(jobs=jobs)
        summary.dashboard = client.dashboard_link
        echo(f"dask dashboard: {client.dashboard_link}  ({len(todo)} videos to process)")
        total = sum(_frames_hint(cache, dataset, e, p) for e, p, _ in todo)
        vbar = tqdm(total=len(todo), desc="videos", unit="video", disable=not progress, file=sys.stderr, position=0)
        fbar = tqdm(total=total or None, desc="frames", unit="frame", disable=not progress, file=sys.stderr,
                    position=1, smoothing=0.1)
        client.subscribe_topic(TOPIC, lambda event: fbar.update(event[1][1]))
        resources = {"GPU": 1} if s.device.startswith("cuda") and scheduler != "local" else None
        futures = {client.submit(_task, str(cache), dataset, e, s, w, key=f"video-{dataset}-{e.video}",
                                 pure=False, resources=resources): e for e, _, w in todo}
        for fut in as_completed(futures):
            e = futures[fut]
            try:
                row = fut.result()
            except Exception as err:   # the worker died (killed, out of memory): that video failed, not the run
                row = {"video": e.video, "split": e.split, "source": str(e.path), "status": "failed",
                       "action": "failed", "error": f"{e.path}: worker lost ({type(err).__name__}: {err})"}
            summary.rows.append(row)
            vbar.update(1)
            if row.get("status") == "failed":
                vbar.write(f"failed: {row['error']}")
            update_index(cache, dataset, summary.rows)   # the index is current after every video
        vbar.close()
        fbar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _task(cache: str, dataset: str, entry: VideoEntry, s: extract.Settings, want: dict) -> dict:
    """Runs on a worker: one video, frames reported to the client as events."""
    from distributed import get_worker

    worker = get_worker()
    return extract.process_video(cache, dataset, entry, s,
                                 report=lambda k: worker.log_event(TOPIC, (entry.video, int(k))), want=want)


def _frames_hint(cache: Path, dataset: str, e: VideoEntry, p: extract.Plan) -> int:
    if p.action == "update":
        return int(store.open_video(cache, dataset, e.video).attrs.get("n_frames", 0))
    try:
        from features.video import probe
        return max(0, probe(e.path).n_frames)
    except Exception:
        return 0


def _skip_row(cache: Path, dataset: str, e: VideoEntry, p: extract.Plan) -> dict:
    row = store.index_row(cache, dataset, e.video)
    row.update(action="skip", reason=p.reason, decoded=0, seconds=0.0)
    return row


def update_index(cache: Path, dataset: str, rows: list[dict]) -> None:
    """Merge this run's rows into index.parquet (rows of videos not in this run are kept)."""
    old = store.read_index(cache, dataset)
    merged = {} if old is None else {r["video"]: r for r in old.to_dict("records")}
    for r in rows:
        if r.get("status") == "failed" and merged.get(r["video"], {}).get("status") == "done" \
                and store.group_status(cache, dataset, r["video"]) == "done":
            # a failed update of a done group: the group stays usable; record the error beside it
            merged[r["video"]] = {**merged[r["video"]], "error": r["error"]}
            continue
        merged[r["video"]] = {c: r.get(c) for c in store.INDEX_COLUMNS}
    store.write_index(cache, dataset, list(merged.values()))


def describe_plan(entries, plans, cache, dataset, scheduler, workers) -> str:
    """The --dry-run report: what each video needs, and where it would run."""
    lines = [f"plan for {len(entries)} videos of {dataset!r} into {cache}/{dataset} "
             f"(scheduler {scheduler}, workers {workers or os.cpu_count()}):"]
    for e, p in zip(entries, plans):
        lines.append(f"  {e.video:28s} {p.action:7s} {p.reason}")
    counts = {a: sum(p.action == a for p in plans) for a in ("full", "update", "skip")}
    lines.append(f"{counts['full']} to extract, {counts['update']} to update, {counts['skip']} already done")
    return "\n".join(lines)

