"""Watching the workers of a `features` run, so that a lost worker never hangs it.

Each video's task says where it starts (`tracked`), so when a worker leaves (walltime, scancel, preemption, out of
memory) the client knows which video lost its worker. Dask runs that video again elsewhere, and it resumes from its
last complete block (pipeline/resume.py). A lost worker counts against the video only when the video saved no
new block meanwhile: after --retries such losses it is recorded failed, with the reason; a video that advances
goes on however many jobs it takes. On a batch system, dask-jobqueue's adaptive scaling keeps up to --jobs
jobs (a new one for each that ended). While no worker is connected the run says so every 30 s, with the jobs' states;
after --worker-timeout without one (on SLURM: as soon as every job has ended and none replaced it) it stops with the
job states and what to change.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter

from distributed.diagnostics.plugin import WorkerPlugin

from pipeline.cluster import (
    BATCH_SYSTEMS,
    DEFAULT_RETRIES,
    DEFAULT_WORKER_TIMEOUT,
    batch_lifetime,
    format_seconds,
    lifetime_flag,
    parse_duration,
)
from pipeline.wording import counted

START_TOPIC = "mimamo-start"
MEMORY_TOPIC = "worker-restart-memory"   # the nanny's event when it kills its worker for its memory (distributed)
POLL = 1.0              # s between looks at the workers
REPORT_EVERY = 30.0     # s between "waiting for a worker" lines
QUERY_EVERY = 10.0      # s between squeue calls while no worker is connected
ENDED_GRACE = 60.0      # s: adapt replaces an ended job within ~20 s (the lost-worker timeout, 15 s, then its poll)
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
          "RESIZING", "SIGNALING", "STAGE_OUT"}


def tracked(fn, video: str, *args):
    """Runs on a worker: tell the client that this video starts here, then run fn(*args)."""
    from distributed import get_worker

    worker = get_worker()
    worker.log_event(START_TOPIC, (video, worker.address))
    return fn(*args)


class ExitWhenClosed(WorkerPlugin):
    """Batch workers: a closed worker's process exits within seconds, even while a video's thread still runs.

    A worker retiring at its lifetime stops talking to the scheduler, but the thread extracting its video cannot be
    interrupted and would go on writing that video's group (until the job is cancelled or its walltime ends) while
    the video starts again on another worker: two writers of one group. Exiting the process ends it.
    """

    name = "mimamo-exit-when-closed"
    grace = 3.0

    def teardown(self, worker) -> None:
        timer = threading.Timer(self.grace, os._exit, args=(0,))
        timer.daemon = True
        timer.start()


def slurm_job_states(ids) -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} from squeue (jobs slurmctld still remembers), else sacct (the accounting)."""
    ids = sorted({str(i) for i in ids})
    out: dict[str, tuple[str, str]] = {}
    if not ids:
        return out
    for line in _command(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r"]).splitlines():
        job, state, reason = (line.split("|") + ["", ""])[:3]
        out[job.strip()] = (state.strip(), reason.strip())
    missing = [i for i in ids if i not in out]
    if missing:
        for line in _command(["sacct", "-X", "-n", "-P", "-j", ",".join(missing), "-o", "JobID,State,Reason"]) \
                .splitlines():
            job, state, reason = (line.split("|") + ["", ""])[:3]
            if job.strip() in missing and state.strip():
                out[job.strip()] = (state.split()[0], reason.strip())   # "CANCELLED by 0" -> CANCELLED
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _command(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def describe_jobs(states: dict[str, tuple[str, str]], ids) -> str:
    """'17 TIMEOUT, 18 PENDING (Priority)' for the last few jobs."""
    ids = sorted({str(i) for i in ids}, key=lambda i: (len(i), i))[-6:]
    parts = []
    for i in ids:
        state, reason = states.get(i, ("state unknown", ""))
        parts.append(f"{i} {state}" + (f" ({reason})" if reason and reason not in ("None", "(null)") else ""))
    return ", ".join(parts)


def what_to_change(states: dict[str, tuple[str, str]], walltime: str, log_hint: str) -> str:
    """What the jobs' final states ask the user to change (queue, walltime, memory, ...)."""
    seen = {s for s, _ in states.values()}
    hints = []
    if "PENDING" in seen:
        hints.append("jobs wait in the queue (the reason is in brackets): choose another --queue, ask for less per "
                     "job (--cores, --memory, a shorter --walltime), use fewer --jobs, or wait longer "
                     "(--worker-timeout)")
    if "TIMEOUT" in seen:
        hints.append(f"jobs reached their walltime (--walltime {walltime}): give a longer --walltime "
                     "(or a shorter --lifetime, so workers retire before it)")
    if seen & {"CANCELLED", "PREEMPTED", "DEADLINE"}:
        hints.append("jobs were cancelled (scancel, or preempted by other jobs): rerun; on a preemptible partition "
                     "choose another --queue")
    if "OUT_OF_MEMORY" in seen:
        hints.append("jobs ran out of memory: give more --memory")
    if seen & {"FAILED", "NODE_FAIL", "BOOT_FAIL", "COMPLETED"} or not seen:
        hints.append(f"read the jobs' logs ({log_hint}): workers that exit or never start say why there")
    return "; ".join(hints)


class WorkerWatch:
    """Follows workers, jobs and which video runs where; decides when a video or the whole run gives up."""

    def __init__(self, client, cluster, scheduler: str, opts: dict, jobs: int, fbar=None, say=print, saved=None):
        self.client, self.cluster, self.scheduler, self.opts = client, cluster, scheduler, dict(opts)
        self.kind = scheduler if scheduler in BATCH_SYSTEMS else None
        self.max_jobs = max(1, int(jobs))
        retries = opts.get("retries")
        self.retries = int(DEFAULT_RETRIES if retries is None else retries)
        self.timeout = parse_duration(opts.get("worker_timeout") or DEFAULT_WORKER_TIMEOUT, "slurm",
                                      "--worker-timeout")
        self.fbar, self.say = fbar, say
        self.lock = threading.Lock()
        self.running: dict[str, str] = {}      # video -> address of the worker it started on
        self.restarted: list[tuple[str, str]] = []   # (video, address) of attempts replaced before _check saw them
        self.frames: Counter = Counter()       # frames reported by each video's current attempt
        self.losses: Counter = Counter()       # losses without progress, per video
        # frames each video had saved when last looked (the client reads them from its group: pipeline/resume.py)
        self.saved_of = saved or (lambda video: 0)
        self.saved: dict[str, int] = {}
        self.first_start: dict[str, float] = {}   # video -> when its first attempt of this run started
        self.names: dict[str, str] = {}        # worker address -> name, every worker seen
        self.limits: dict[str, int] = {}       # worker address -> its memory limit (bytes), every worker seen
        self.over_memory: dict[str, int] = {}  # worker address -> its memory (bytes) when its nanny killed it
        self.lost_at: dict[str, list[str]] = {}   # video -> addresses of the workers it lost
        self.job_ids: dict[str, str] = {}      # job name -> batch job id, every job submitted
        self.states: dict[str, tuple[str, str]] = {}
        self.stop_reason: str | None = None
        now = time.monotonic()
        self.last_worker = now
        self.last_report = self.last_query = float("-inf")
        self.ended_since: float | None = None
        self._minimum: int | None = None
        client.subscribe_topic(START_TOPIC, self._on_start)
        client.subscribe_topic(MEMORY_TOPIC, self._on_memory)
        if self.kind:
            client.register_plugin(ExitWhenClosed())

    # ------------------------------------------------------------ events (client's event loop thread)

    def _on_start(self, event) -> None:
        video, address = event[1]
        self.first_start.setdefault(video, time.monotonic())
        with self.lock:
            previous = self.running.get(video)
            if previous is not None and previous != address:
                # it starts again elsewhere before _check saw its worker go: that was a loss all the same
                self.restarted.append((video, previous))
            self.running[video] = address

    def _on_memory(self, event) -> None:
        # without this a worker killed for its memory inside a running job read as a lost worker, and the video
        # failed saying "give a longer --walltime" (the job had minutes left): the memory is what to change
        msg = event[1]
        with self.lock:
            self.over_memory[str(msg.get("worker"))] = int(msg.get("rss") or 0)

    def on_frames(self, event) -> None:
        """A frames event of a task: (video, frames done since the last one)."""
        video, k = event[1][0], int(event[1][1])
        with self.lock:
            self.frames[video] += k
        if self.fbar is not None:
            self.fbar.update(k)

    # ------------------------------------------------------------ the waiting loop (main thread)

    def step(self, futures: dict) -> tuple[list, dict]:
        """Wait up to a second; (finished futures, {future: why} of videos given up). Sets stop_reason to stop."""
        from distributed import wait

        if self.kind:
            self._adapt(len(futures))
        try:
            wait(list(futures), timeout=POLL, return_when="FIRST_COMPLETED")
        except TimeoutError:
            pass
        given_up = self._check(futures)
        return [f for f in futures if f.done() and f not in given_up], given_up

    def _adapt(self, left: int) -> None:
        # at least min(--jobs, videos left) jobs: adapt submits a new job for each that ended, and lets idle ones
        # go once fewer videos are left than jobs
        minimum = min(self.max_jobs, left)
        if minimum != self._minimum:
            self.cluster.adapt(minimum_jobs=minimum, maximum_jobs=self.max_jobs)
            self._minimum = minimum

    def _check(self, futures: dict) -> dict:
        now = time.monotonic()
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        if self.kind:
            for name, job in list(self.cluster.workers.items()):
                if getattr(job, "job_id", None):
                    self.job_ids[name] = str(job.job_id)
        for address, w in workers.items():
            if address not in self.names:
                self.names[address] = str(w.get("name", address))
                self.limits[address] = int(w.get("memory_limit") or 0)
                if self.losses:
                    self.say(f"worker {self.names[address]}{self._job_text(self.names[address])} joined")
        given_up = {}
        by_video = {e.video: f for f, e in futures.items()}
        with self.lock:
            lost = [(v, a) for v, a in self.running.items() if a not in workers]
            for v, _ in lost:
                del self.running[v]
            lost, self.restarted = self.restarted + lost, []
        for video, address in lost:
            fut = by_video.get(video)
            if fut is not None and not fut.done() and fut not in given_up:
                given_up.update(self._lost(video, address, fut, futures[fut]))
        if workers:
            self.last_worker, self.ended_since = now, None
        elif len(futures) > len(given_up):
            self._waiting(now, len(futures) - len(given_up))
        return given_up

    def _lost(self, video: str, address: str, fut, entry) -> dict:
        before, now = self.saved.get(video, 0), self.saved_of(video)
        self.saved[video] = max(before, now)
        with self.lock:
            done = self.frames.pop(video, 0)
        redo = max(0, done - max(0, now - before))   # frames decoded but not saved are done again
        if self.fbar is not None and redo:
            self.fbar.update(-redo)
        name = self.names.get(address, address)
        self.lost_at.setdefault(video, []).append(address)
        who = f"{name}{self._job_text(name)}{self._memory_text(address)}"
        if now > before:   # it saved blocks: not a failing video, it goes on from there
            self.say(f"{video}: its worker {who} left after saving frames {before}..{now} (or "
                     "more while it stopped); the video resumes from its last saved block on another worker")
            return {}
        self.losses[video] += 1
        n = self.losses[video]
        if n <= self.retries:
            after = f" after {done} frames" if done else ""
            where = f"resumes at frame {now}" if now else "starts again"
            self.say(f"{video}: its worker {who} left{after} without saving a block; the video "
                     f"{where} on another worker (attempt {n + 1} of {self.retries + 1})")
            return {}
        fut.cancel()
        oom = [a for a in self.lost_at.get(video, []) if a in self.over_memory]
        if oom:
            why = self._memory_why(oom, n)
        elif self.kind:
            lifetime, stagger = batch_lifetime(self.kind, self.opts)
            flag = lifetime_flag(self.opts)
            why = (f"its worker was lost {_times(n)} before the video saved a block{self._job_text(name, True)}; one "
                   f"block (--chunk-frames) must be done within one worker's life (at most "
                   f"{format_seconds(lifetime + stagger)}, from {flag} {self.opts.get(flag[2:])}): give a longer "
                   f"{flag} or a smaller --chunk-frames")
        else:
            why = (f"its worker died {_times(n)} while extracting it (killed, or out of memory?): give each worker more "
                   "memory (fewer --workers) and rerun")
        return {fut: f"{entry.path}: {why}"}

    def _memory_text(self, address: str) -> str:
        with self.lock:
            rss = self.over_memory.get(address)
        return "" if rss is None else f" (out of memory: killed by Dask at {_mib(rss)} of its {self._limit(address)})"

    def _limit(self, address: str) -> str:
        limit = self.limits.get(address)
        return f"{_mib(limit)} limit" if limit else "memory limit"

    def _memory_why(self, oom: list[str], n: int) -> str:
        """Why a video failed whose worker was killed for its memory (Dask's nanny at 95% of the worker's limit)."""
        with self.lock:
            rss = max(self.over_memory[a] for a in oom)
        others = f"; lost {_times(n)} in all" if n != len(oom) else ""
        head = (f"its worker ran out of memory {_times(len(oom))} while extracting it (Dask killed it at {_mib(rss)}, "
                f"over 95% of its {self._limit(oom[-1])}{others})")
        if self.kind:   # a job's --memory is shared by its worker processes
            return f"{head}: its job had --memory {self.opts.get('memory')}; give more --memory"
        return f"{head}: give each worker more memory (fewer --workers) and rerun"

    def _job_text(self, worker_name: str, with_state: bool = False) -> str:
        job = self._job_of(worker_name)
        if job is None:
            return ""
        if with_state and self.kind == "slurm":
            state, _ = slurm_job_states([job]).get(job, ("", ""))
            if state and state not in ACTIVE:       # a job still RUNNING is only its worker's process exiting
                return f" (job {job} {state})"
        return f" (job {job})"

    def _job_of(self, worker_name: str) -> str | None:
        # a job's workers are named after it: "SLURMCluster-3", or "SLURMCluster-3-0".. with several processes
        for name in sorted(self.job_ids, key=len, reverse=True):
            if worker_name == name or worker_name.startswith(name + "-"):
                return self.job_ids[name]
        return None

    def _waiting(self, now: float, left: int) -> None:
        waited = now - self.last_worker
        if self.kind == "slurm" and self.job_ids and now - self.last_query >= QUERY_EVERY:
            self.states, self.last_query = slurm_job_states(self.job_ids.values()), now
            active = any(s in ACTIVE for s, _ in self.states.values())
            self.ended_since = None if active else (self.ended_since or now)
        all_ended = self.ended_since is not None and now - self.ended_since >= ENDED_GRACE
        refused = getattr(self.cluster, "refused", [])
        if refused and waited >= ENDED_GRACE:      # dask-jobqueue does not submit a refused job again
            self.stop_reason = (f"no Dask worker for {waited:.0f} s with {counted(left, 'video')} left: the batch system refused "
                                f"the job: {' / '.join(refused[-1].splitlines())}. Ask for less "
                                "per job (--cores, --memory, --walltime, --gpus) or another --queue; what finished is "
                                "in the index; rerun the same command to do the rest")
        elif waited >= self.timeout or all_ended:
            self.stop_reason = self._stop_message(waited, left, all_ended)
        elif waited >= QUERY_EVERY and now - self.last_report >= REPORT_EVERY:
            self.last_report = now
            jobs = f"; jobs: {describe_jobs(self.states, self.job_ids.values())}" if self.job_ids else ""
            self.say(f"waiting for a worker: none connected for {waited:.0f} s, {counted(left, 'video')} left (the run stops "
                     f"after {format_seconds(self.timeout)} without one: --worker-timeout){jobs}")

    def _stop_message(self, waited: float, left: int, all_ended: bool) -> str:
        head = f"no Dask worker for {waited:.0f} s with {counted(left, 'video')} left"
        tail = "; what finished is in the index; rerun the same command to do the rest"
        if self.kind:
            if not self.job_ids:
                return f"{head}: no batch job was submitted (see the errors above){tail}"
            ids = self.job_ids.values()
            ended = "every batch job ended and none replaced it" if all_ended else "batch jobs"
            log = "slurm-<id>.out in the folder the run started from" if self.kind == "slurm" else "the job output files"
            states = describe_jobs(self.states, ids) if self.states else ", ".join(sorted(ids))
            return f"{head}: {ended}: {states}. {what_to_change(self.states, self.opts.get('walltime'), log)}{tail}"
        if self.scheduler == "local":
            return f"{head}: the local workers died and none came back (killed, or out of memory?){tail}"
        return (f"{head}: the cluster at {self.scheduler} has no workers: start some (dask worker {self.scheduler}), "
                f"or wait longer (--worker-timeout){tail}")
