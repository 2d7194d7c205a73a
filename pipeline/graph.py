"""The stage graph: one Dask task chain per video, on a LocalCluster, an existing cluster, or a batch system.

Each task runs `extract.process_video`, which streams its video (bounded memory) and never raises for a bad
video. The client holds the dataset's lock (pipeline/lock.py: one run at a time per cache and dataset), plans
(what is done, what is stale), submits, shows progress over videos and frames, rebuilds each video's index row
from its group after every video (the group is the truth; the index a summary), and prints a summary.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from features.errors import BadInputError
from pipeline import extract, faces, label_files, resume, store, unlisted
from pipeline.cluster import BATCH_SYSTEMS, batch_cluster, dashboard_link, make_cluster
from pipeline.lock import FeaturesLock, command_line
from pipeline.manifest import VideoEntry, guard_ids
from pipeline.wording import counted

TOPIC = "mimamo-frames"
GATHER_TIMEOUT = 10.0   # s to fetch a finished video's row; longer: it was lost with its worker and runs again


@dataclass
class Summary:
    """What a features run did."""

    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    truth: dict[str, dict] = field(default_factory=dict)   # video -> index row rebuilt from its group, once
    dashboard: str | None = None
    stopped: str | None = None     # why the run stopped before every video was tried (no worker came back)
    tracked: int = 0               # arrays made before chunk tracking that this run marked (pipeline/untracked.py)

    def count(self, action: str) -> int:
        return sum(r.get("action") == action for r in self.rows)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r.get("status") == "failed"]

    @property
    def frames_per_second(self) -> float:
        decoded = sum(int(r.get("decoded") or 0) for r in self.rows)
        return decoded / self.seconds if self.seconds else 0.0

    def rate(self) -> str:
        """How fast frames came in: decoded, or (--faces cropped_aligned, where nothing is decoded) read from crops."""
        crops = sum(int(r.get("from_crops") or 0) for r in self.rows)
        if not self.frames_per_second and (crops or any(r.get("faces") == "cropped_aligned" for r in self.rows)):
            return f"{crops / self.seconds if self.seconds else 0.0:.1f} frames/s from organiser crops (none decoded)"
        return f"{self.frames_per_second:.1f} frames/s decoded"

    def table(self) -> str:
        """A plain-text table: one line per video, then the totals."""
        lines = [f"{'video':28s} {'action':8s} {'status':7s} {'frames':>7s} {'valid':>7s} {'sec':>7s}  error / note"]
        for r in sorted(self.rows, key=lambda r: r["video"]):
            lines.append(f"{r['video'][:28]:28s} {r.get('action', ''):8s} {str(r.get('status')):7s} "
                         f"{int(r.get('n_frames') or 0):7d} {int(r.get('n_valid') or 0):7d} "
                         f"{float(r.get('seconds') or 0):7.1f}  {r.get('error') or r.get('note') or ''}")
        faceless = sorted(r["video"] for r in self.rows if r.get("status") == "done"
                          and store.NO_FACE in str(r.get("note") or ""))
        if faceless:   # done (a real result, its frames masked), but never silently: train has nothing of them
            lines.append(f"{store.NO_FACE} of {counted(len(faceless), 'video')}: {', '.join(faceless[:10])}"
                         + (f" and {len(faceless) - 10} more" if len(faceless) > 10 else "")
                         + " (recorded done with no valid frame: check the video, or use --faces cropped_aligned "
                           "or --faces openface)")
        resumed = sum(bool(r.get("resumed_from")) for r in self.rows if r.get("status") == "done")
        rebuilt = sum(bool(r.get("rebuilt")) for r in self.rows if r.get("action") == "full")
        lines.append(f"done: {self.count('full') - rebuilt} new" + (f" ({resumed} resumed mid-way)" if resumed else "")
                     + (f", {rebuilt} rebuilt" if rebuilt else "") + f", {self.count('update')} updated, "
                     f"{self.count('skip')} skipped (already done); failed: {len(self.failed)}; "
                     f"{self.rate()} in {self.seconds:.1f} s"
                     + (f"; marked {self.tracked} arrays made before chunk tracking (every chunk file present)"
                        if self.tracked else ""))
        return "\n".join(lines)


# ---------------------------------------------------------------- the run


def plan_all(entries: list[VideoEntry], cache: Path, dataset: str, s: extract.Settings,
             replace_variant: bool = False, forced: dict[str, str] | None = None):
    """Fingerprints and plan of every video, on the client (the weights file is hashed once, not per video).
    ``forced``: {video: the run's token} of the videos `--force` extracts again (a done one is rebuilt beside its
    group: extract.plan).

    A motion variant the cache already holds under other settings is refused (unless replace_variant): a name
    means one set of settings, and silently replacing it would change what earlier runs trained on.
    """
    enc = extract.encoder_fingerprint(s) if "spatial" in s.stages else None
    wants = [extract.fingerprints(s, e, enc) for e in entries]
    plans = [extract.plan(cache, dataset, e, w, s, replace_variant, (forced or {}).get(e.video))
             for e, w in zip(entries, wants)]
    conflicts = [(e.video, p.reason, p.hint) for e, p in zip(entries, plans) if p.action == "conflict"]
    if conflicts:
        more = f" (and {len(conflicts) - 1} more videos)" if len(conflicts) > 1 else ""
        raise BadInputError(store.dataset_dir(cache, dataset), f"video {conflicts[0][0]}: {conflicts[0][1]}{more}",
                            conflicts[0][2] or "give this variant another --motion-variant name (a cache holds "
                            "variants side by side), or pass --replace-variant to recompute it")
    return wants, plans


def run(entries: list[VideoEntry], cache: str | Path, dataset: str, s: extract.Settings, *,
        scheduler: str = "local", workers: int | None = None, jobs: int = 1, cluster_opts: dict | None = None,
        dry_run: bool = False, progress: bool = True, echo=print, force: bool = False,
        replace_variant: bool = False, wait_for_lock: float = 0.0, whole_dataset: bool = False,
        prune: bool = False) -> Summary:
    """Build or bring up to date the cache of these videos; per-video failures are recorded, not raised.

    Holds the cache's lock for this dataset while it runs (a second run waits up to wait_for_lock seconds, then
    stops naming the holder). `force` extracts these videos again: a done group is rebuilt beside itself and kept
    until its rebuild is complete, a partial one is started over (removed first, under the lock). `whole_dataset`: the
    entries are the dataset's whole listing, so cached videos not among them are marked (or with `prune` deleted):
    pipeline/unlisted.py.
    """
    cache = Path(cache)
    entries = guard_ids(entries)   # the listers check ids where they make them; this covers any other caller
    if dry_run:
        wants, plans = plan_all(entries, cache, dataset, s, replace_variant, _forced(entries, cache, dataset, s, force))
        echo(describe_plan(entries, plans, cache, dataset, scheduler, workers))
        gone = unlisted.not_listed(cache, dataset, {e.video for e in entries}) if whole_dataset else []
        if gone:
            echo(f"{len(gone)} cached videos no longer in the dataset ({', '.join(gone[:8])}"
                 f"{' ...' if len(gone) > 8 else ''}): would be " + ("deleted" if prune else "marked unusable"))
        if scheduler in BATCH_SYSTEMS:
            echo("job script:\n" + batch_cluster(scheduler, cluster_opts or {}).job_script())
        return Summary()
    with FeaturesLock(cache, dataset, command_line(sys.argv)).acquire(wait_for_lock, echo) as lock:
        # half-built arrays of killed or failed tasks: no task of this dataset runs now (an orphaned task whose
        # folder this removes fails at its swap, which is what it should do); partial rebuilds may be resumed
        resume.clean_staging(cache, dataset)
        roots = {(str(e.root), e.root_from) for e in entries if e.root is not None}
        if len(roots) == 1:   # the root these label files are read from: readers compare with its files
            label_files.record_root(cache, dataset, *roots.pop())
        kept = _unmakeable(entries, cache, dataset, s) if force else {}
        forced = _forced(entries, cache, dataset, s, force, kept)
        for e in entries:   # a partial group --force starts over; a done one stays, read, until rebuilt beside it
            if e.video in forced and store.group_status(cache, dataset, e.video) != "done":
                shutil.rmtree(store.video_dir(cache, dataset, e.video), ignore_errors=True)
        wants, plans = plan_all(entries, cache, dataset, s, replace_variant, forced)
        gone = unlisted.reconcile(cache, dataset, {e.video for e in entries}, prune) if whole_dataset else None
        for line in gone.lines(cache, dataset) if gone else []:
            echo(line)
        for e, p in zip(entries, plans):
            if not (p.action == "full" and p.beside):
                resume.drop_rebuild(cache, dataset, e.video)   # a partial rebuild this video no longer needs
            # a group made before sources were identified by contents, or with arrays made before chunk tracking
            # (pipeline/untracked.py): recorded now, under the lock, before any worker opens it
            if p.adopt or p.track:
                extract.record_adopted(cache, dataset, e.video, p.adopt, p.track)
            # said here: the summary table shows no reasons
            if p.resume or "started over" in p.reason or {"split", store.UNLISTED} & p.adopt.keys():
                echo(f"{e.video}: {p.reason}")
        for line in redone_lines(entries, plans):
            echo(line)
        todo = [(e, p, w) for e, p, w in zip(entries, plans, wants) if p.action != "skip"]
        summary = Summary(rows=[_skip_row(cache, dataset, e, p, kept.get(e.video)) for e, p in zip(entries, plans)
                                if p.action == "skip"], tracked=sum(len(p.track) for p in plans))
        t0 = time.perf_counter()
        if todo:
            _submit_all(todo, cache, dataset, s, scheduler, workers, jobs, cluster_opts, summary, progress, echo,
                        replace_variant, lock, forced)
        summary.seconds = time.perf_counter() - t0
        update_index(cache, dataset, summary.rows, lock, summary.truth,
                     drop=[*gone.pruned, *gone.dropped] if gone else (),
                     refresh=gone.marked if gone else ())
    return summary


def _submit_all(todo, cache, dataset, s, scheduler, workers, jobs, cluster_opts, summary, progress, echo,
                replace_variant, lock, forced):
    from distributed import Client

    from pipeline.watch import WorkerWatch, tracked

    opts = dict(cluster_opts or {})
    cluster = make_cluster(scheduler, workers, opts=opts)
    client = Client(cluster if cluster is not None else scheduler)
    try:
        summary.dashboard = dashboard_link(cluster, client)
        echo(f"dask dashboard: {summary.dashboard}  ({counted(len(todo), 'video')} to process)")
        total = sum(_frames_hint(cache, dataset, e, p) for e, p, _ in todo)
        vbar = tqdm(total=len(todo), desc="videos", unit="video", disable=not progress, file=sys.stderr, position=0)
        fbar = tqdm(total=total or None, desc="frames", unit="frame", disable=not progress, file=sys.stderr,
                    position=1, smoothing=0.1)
        # lost workers, job states and waiting times are said as they happen, above the bars
        watch = WorkerWatch(client, cluster, scheduler, opts, jobs, fbar=fbar, say=vbar.write if progress else echo,
                            saved=lambda video: _saved(cache, dataset, video, plans[video]))
        watch.saved.update({e.video: int(p.resume["frames"]) for e, p, _ in todo if p.resume})
        client.subscribe_topic(TOPIC, watch.on_frames)
        resources = {"GPU": 1} if s.device.startswith("cuda") and scheduler != "local" else None
        plans = {e.video: p for e, p, _ in todo}
        futures = {client.submit(tracked, _task, e.video, str(cache), dataset, e, s, w, replace_variant,
                                 forced.get(e.video), key=f"video-{dataset}-{e.video}", pure=False, resources=resources): e
                   for e, _, w in todo}
        while futures and watch.stop_reason is None:
            done, given_up = watch.step(futures)
            for fut in done + list(given_up):
                e = futures[fut]
                if fut in given_up:
                    row = _failed_row(e, given_up[fut])
                else:
                    try:
                        row = fut.result(timeout=GATHER_TIMEOUT)
                        if row.get("status") == "done":
                            at = store.open_video(cache, dataset, e.video).attrs.get("resumed_at", [])
                            row = _whole_run(row, plans[e.video], s, watch.first_start.get(e.video), list(at))
                    except TimeoutError:   # its result was on a worker that left: Dask runs it again (a skip)
                        continue
                    except Exception as err:   # the worker died more often than the scheduler allows
                        row = _failed_row(e, f"{e.path}: worker lost ({type(err).__name__}: {err})")
                futures.pop(fut)
                summary.rows.append(row)
                vbar.update(1)
                if row.get("status") == "failed":
                    vbar.write(f"failed: {row['error']}")
                summary.truth[row["video"]] = truth_row(cache, dataset, row)
                update_index(cache, dataset, summary.rows, lock, summary.truth)   # current after every video
        if watch.stop_reason:
            client.cancel(list(futures))
            summary.stopped = watch.stop_reason
            for e in futures.values():   # finished by a worker that left before its result was collected
                if _saved(cache, dataset, e.video, plans[e.video]) and store.group_status(cache, dataset,
                                                                                          e.video) == "done":
                    summary.rows.append({**store.index_row(cache, dataset, e.video), "action": plans[e.video].action,
                                         "decoded": 0})
        vbar.close()
        fbar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _saved(cache: Path, dataset: str, video: str, p: extract.Plan) -> int:
    """Frames of a video saved so far in this run's build: its progress record, or all of them once it is done."""
    frames = resume.saved_frames(cache, dataset, video)
    if frames or p.action != "full" or store.group_status(cache, dataset, video) != "done":
        return frames
    g = store.open_video(cache, dataset, video)   # done: by this build only if it has the fingerprints it wanted
    fps = dict(g.attrs.get("fingerprints", {}))
    return int(g.attrs["n_frames"]) if all(fps.get(n) == fp for n, fp in p.want.items()) else 0


def _whole_run(row: dict, p: extract.Plan, s: extract.Settings, first_start: float | None, resumed_at: list) -> dict:
    """The row of a video as this run built it, not only its last attempt: a video resumed by a later attempt counts
    the frames and seconds of all of them; one finished by an attempt whose worker was thought lost (the last attempt
    found it done) is the planned build, not a skip. `resumed_at`: the group's record of where it was resumed."""
    if row.get("status") != "done" or p.action != "full":
        return row
    start = int(p.resume["frames"]) if p.resume else 0
    later = [int(f) for f in resumed_at if int(f) > start]   # resumed by an attempt of this run
    if later or row.get("action") == "skip":
        row.update(action=p.action, reason=p.reason)
        row["from_crops" if s.faces == "cropped_aligned" else "decoded"] = int(row["n_frames"]) - start
        if first_start is not None:
            row["seconds"] = time.monotonic() - first_start
    row["resumed_from"] = int(resumed_at[-1]) if resumed_at else 0
    return row


def _failed_row(e: VideoEntry, error: str) -> dict:
    return {"video": e.video, "split": e.split, "source": str(e.path), "status": "failed", "action": "failed",
            "error": error, "labelled": e.is_labelled()}


def _task(cache: str, dataset: str, entry: VideoEntry, s: extract.Settings, want: dict,
          replace_variant: bool, force: str | None) -> dict:
    """Runs on a worker: one video, frames reported to the client as events."""
    from distributed import get_worker

    worker = get_worker()
    return extract.process_video(cache, dataset, entry, s,
                                 report=lambda k: worker.log_event(TOPIC, (entry.video, int(k))), want=want,
                                 replace_variant=replace_variant, force=force)


def _frames_hint(cache: Path, dataset: str, e: VideoEntry, p: extract.Plan) -> int:
    if p.action == "update":
        return int(store.open_video(cache, dataset, e.video).attrs.get("n_frames", 0))
    try:
        from features.video import probe
        return max(0, probe(e.path).n_frames - (int(p.resume["frames"]) if p.resume else 0))
    except Exception:
        return 0


def redone_lines(entries: list[VideoEntry], plans: list[extract.Plan], most: int = 5) -> list[str]:
    """One line per reason that done videos are rebuilt or updated, said before the work starts: the summary table
    shows no reasons, and a rebuild replaces what a done group held (faces from another source, a code upgrade),
    which a researcher must hear of before hours of extraction rather than find afterwards."""
    by_reason: dict[str, list[str]] = {}
    for e, p in zip(entries, plans):
        if p.action == "update" or (p.action == "full" and p.beside):   # beside: a done group, kept until rebuilt
            by_reason.setdefault(p.reason, []).append(e.video)
    lines = []
    for reason, videos in by_reason.items():
        more = f" and {len(videos) - most} more" if len(videos) > most else ""
        lines.append(f"{len(videos)} done video{'s' * (len(videos) > 1)} ({', '.join(videos[:most])}{more}): "
                     f"{reason}")
    return lines


def _skip_row(cache: Path, dataset: str, e: VideoEntry, p: extract.Plan, kept: str | None = None) -> dict:
    row = store.index_row(cache, dataset, e.video)
    row.update(action="skip", reason=p.reason, decoded=0, seconds=0.0)
    if kept:   # --force could not redo it: failed in this run's table and exit code, done (kept) in the index
        row.update(action="kept", status="failed", error=kept)
    return row


def _forced(entries: list[VideoEntry], cache: Path, dataset: str, s: extract.Settings, force: bool,
            kept: dict[str, str] | None = None) -> dict[str, str]:
    """{video: this run's token} of the videos `--force` extracts again: all, but the done ones whose source is gone
    (``kept``, _unmakeable). The token, recorded in a group rebuilt, tells a task Dask runs again (its worker left
    after the swap) that this run rebuilt it already."""
    if not force:
        return {}
    kept = _unmakeable(entries, cache, dataset, s) if kept is None else kept
    token = uuid.uuid4().hex
    return {e.video: token for e in entries if e.video not in kept}


def _unmakeable(entries: list[VideoEntry], cache: Path, dataset: str, s: extract.Settings) -> dict[str, str]:
    """{video: why} of the done videos `--force` keeps: their source is gone (faces.source_missing), so their arrays
    could not be made again (a clip deleted after extraction: a disk cleaned, a root copied without its videos). Their
    rebuild would fail and keep the group too; this says why without trying."""
    out = {}
    for e in entries:
        if store.group_status(cache, dataset, e.video) == "done" and (why := faces.source_missing(s, e)):
            out[e.video] = (f"--force: not extracted again, {why}; the arrays made before are kept (readers use them): "
                            "put it back and run again")
    return out


def truth_row(cache: Path, dataset: str, row: dict) -> dict:
    """A video's index row rebuilt from its group (what a reader will find), with this run's error beside it."""
    status = store.group_status(cache, dataset, row["video"])
    if status == "done":
        truth = store.index_row(cache, dataset, row["video"])
        errors = [e for e in (row.get("error"), truth.get("error")) if e]
        return {**truth, "error": "; ".join(errors) or None}
    # no usable group: extraction failed, or stopped part-way (the next run resumes it, or redoes it)
    why = row.get("error") or f"group {status or 'missing'}: not extracted"
    if resume.RESUMES not in why:   # the worker says it of the blocks a failed extraction kept
        why += resume.saved_note(cache, dataset, row["video"])
    return {"video": row["video"], "split": row.get("split"), "source": row.get("source"), "status": "failed",
            "error": why, "n_frames": 0, "labelled": row.get("labelled")}


def update_index(cache: Path, dataset: str, rows: list[dict], lock: FeaturesLock | None = None,
                 truth: dict[str, dict] | None = None, drop=(), refresh=()) -> None:
    """Merge this run's videos into index.parquet, each row rebuilt from its group; other videos' rows are kept.

    `truth` caches rows already rebuilt (video -> row), so a long run reads each group once, not after every video.
    `drop`: videos whose rows go; `refresh`: videos not processed whose rows are rebuilt too (pipeline/unlisted.py).
    """
    truth = {} if truth is None else truth
    if lock is not None and lock.lost:
        raise BadInputError(lock.path, "this run's lock was taken over by another features run",
                            "the other run owns the cache now; rerun this one after it")
    try:
        old = store.read_index(cache, dataset)
    except store.UnreadableIndex as e:   # rebuilt from the groups below; the damaged file is kept aside
        Path(e.path).replace(Path(e.path).with_suffix(".parquet.unreadable"))
        old = None
    merged = {} if old is None else {r["video"]: r for r in old.to_dict("records") if r["video"] not in drop}
    for r in [*rows, *({"video": v} for v in refresh)]:
        if r["video"] not in truth:
            truth[r["video"]] = truth_row(cache, dataset, r)
        merged[r["video"]] = {c: v for c, v in truth[r["video"]].items() if c in store.INDEX_COLUMNS}
    store.write_index(cache, dataset, list(merged.values()))


def describe_plan(entries, plans, cache, dataset, scheduler, workers) -> str:
    """The --dry-run report: what each video needs, and where it would run."""
    lines = [f"plan for {counted(len(entries), 'video')} of {dataset!r} into {cache}/{dataset} "
             f"(scheduler {scheduler}, workers {workers or os.cpu_count()}):"]
    for e, p in zip(entries, plans):
        lines.append(f"  {e.video:28s} {p.action:7s} {p.reason}")
    counts = {a: sum(p.action == a for p in plans) for a in ("full", "update", "skip")}
    track = sum(len(p.track) for p in plans)
    lines.append(f"{counts['full']} to extract, {counts['update']} to update, {counts['skip']} already done"
                 + (f"; {track} arrays made before chunk tracking to mark (every chunk file present)" if track else ""))
    return "\n".join(lines)

