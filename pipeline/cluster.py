"""The Dask clusters of `features`: LocalCluster or a batch system's (dask-jobqueue), with a private dashboard.

The dashboard listens on 127.0.0.1 unless `--dashboard HOST:PORT` opens it (it shows paths, video names and logs to
anyone who can reach it). Batch workers retire a little before their job's walltime (`--lifetime`, staggered), so
their videos go back to the scheduler cleanly instead of dying with the job; `features` then keeps up to --jobs jobs
with dask-jobqueue's adaptive scaling, which submits a new job for each one that ended.
"""
from __future__ import annotations

import logging
import os
import socket

from features.errors import BadInputError

BATCH_SYSTEMS = ("slurm", "pbs", "sge", "lsf")
DEFAULT_DASHBOARD = "127.0.0.1:0"      # this machine only, a free port
DEFAULT_RETRIES = 2                    # a video whose worker is lost starts again at most twice more
DEFAULT_WORKER_TIMEOUT = "30m"         # queue waits of tens of minutes are normal on busy clusters
MAX_ATTEMPTS = 100_000                 # lost workers per video the scheduler tolerates: in effect, features decides


def parse_dashboard(text: str | None) -> tuple[str, int]:
    """(host, port) of --dashboard: HOST:PORT, PORT (this machine only) or :PORT (every interface)."""
    text = (text or DEFAULT_DASHBOARD).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    elif host in ("", "*"):
        host = "0.0.0.0"
    host = host.strip("[]")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise BadInputError(None, f"--dashboard {text!r} is not HOST:PORT",
                            "e.g. 127.0.0.1:8787 (this machine only; the default, with a free port), "
                            "0.0.0.0:8787 (every interface: anyone on the network sees the run)")
    return host, int(port)


def parse_duration(text: str | int | float, kind: str = "slurm", flag: str = "--walltime") -> float:
    """Seconds in a walltime or lifetime: [D-]HH:MM:SS, MM:SS (HH:MM for LSF), a number, or 90s / 50m / 4h."""
    if isinstance(text, (int, float)):
        return float(text)
    t = str(text).strip()
    try:
        if ":" in t or t.isdigit() or ("-" in t and t.split("-")[0].isdigit()):
            days, _, clock = t.rpartition("-") if "-" in t else ("", "", t)
            parts = [float(p) for p in clock.split(":")]
            if days and len(parts) < 3:     # SLURM's D-HH and D-HH:MM
                parts = (parts + [0.0, 0.0])[:3]
            elif len(parts) == 1:    # a bare number: minutes for SLURM and LSF, seconds for PBS and SGE
                parts = [0.0, parts[0], 0.0] if kind in ("slurm", "lsf") else [0.0, 0.0, parts[0]]
            elif len(parts) == 2:    # MM:SS, but HH:MM for LSF
                parts = [*parts, 0.0] if kind == "lsf" else [0.0, *parts]
            if len(parts) != 3:
                raise ValueError(t)
            h, m, s = parts
            return float(days or 0) * 86400 + h * 3600 + m * 60 + s
        from dask.utils import parse_timedelta

        return float(parse_timedelta(t))
    except (ValueError, KeyError, TypeError):
        raise BadInputError(None, f"{flag} {text!r} is not a duration",
                            "use HH:MM:SS (e.g. 04:00:00), D-HH:MM:SS, or 90s / 50m / 4h") from None


def format_seconds(seconds: float) -> str:
    """A duration as H:MM:SS (as batch systems print walltimes)."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def worker_lifetime(walltime: float) -> tuple[float, float]:
    """(lifetime, stagger) in seconds of a batch worker: it retires before the job's walltime ends.

    Each worker retires after lifetime +- stagger (uniformly drawn, so jobs started together do not all retire at
    once); lifetime + stagger leaves 5% of the walltime (10 s to 10 min) for the worker's start and its retirement.
    """
    stagger = min(0.05 * walltime, 300.0)
    margin = min(max(0.05 * walltime, 10.0), 600.0)
    lifetime = max(walltime - margin - stagger, walltime / 2)
    return lifetime, stagger


def make_cluster(scheduler: str, workers: int | None, threads: int = 1, opts: dict | None = None):
    """The cluster for --scheduler local | slurm|pbs|sge|lsf, or None for tcp://host:port (an existing cluster)."""
    import dask
    import distributed  # noqa: F401 (registers the distributed.* config the scheduler reads)

    opts = dict(opts or {})
    # `features` decides when a video has lost too many workers (pipeline/watch.py: only losses without a new block
    # count, and it says why); the scheduler (in this process) must not give up first with Dask's KilledWorker,
    # however many jobs a long video resumes through
    with dask.config.set({"distributed.scheduler.allowed-failures": MAX_ATTEMPTS}):
        if scheduler == "local":
            from distributed import LocalCluster

            host, port = parse_dashboard(opts.get("dashboard"))
            n = workers or os.cpu_count() or 1
            # processes, not threads: dlib and OpenCV hold the GIL in places, and one crash must not take all.
            return LocalCluster(n_workers=n, threads_per_worker=threads, processes=True,
                                dashboard_address=f"{host}:{port}", silence_logs=logging.ERROR)
        if scheduler.startswith(("tcp://", "tls://")):
            return None
        if scheduler in BATCH_SYSTEMS:
            return batch_cluster(scheduler, opts)
    raise BadInputError(None, f"unknown scheduler {scheduler!r}",
                        "use local, tcp://host:port (an existing cluster) or one of " + ", ".join(BATCH_SYSTEMS))


def batch_cluster(kind: str, opts: dict):
    """A dask-jobqueue cluster; jobs are requested by `adapt` (pipeline/watch.py), so building one submits nothing."""
    try:
        import dask_jobqueue
    except ImportError:
        raise BadInputError(None, f"--scheduler {kind} needs dask-jobqueue", "pip install 'mimamo[cluster]'") from None
    cls = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}[kind]
    gpus = int(opts.get("gpus") or 0)
    host, port = parse_dashboard(opts.get("dashboard"))
    cores = int(opts["cores"])
    # never more worker processes than cores: the manifest's 2 processes with --cores 1 gave 2 workers on one core
    processes = max(1, min(int(opts.get("processes") or 1), cores))
    kwargs = dict(cores=cores, memory=str(opts["memory"]), walltime=str(opts["walltime"]),
                  processes=processes, silence_logs=logging.ERROR,
                  scheduler_options={"dashboard_address": f"{host}:{port}"})
    extra = list(lifetime_args(kind, opts))
    if opts.get("queue"):
        kwargs["queue"] = opts["queue"]
    if gpus:
        # GPU tasks ask for the GPU resource, so each worker runs one at a time on its card.
        extra += ["--resources", f"GPU={gpus}"]
        if kind == "slurm":
            kwargs["job_extra_directives"] = [f"--gres=gpu:{gpus}"]
        elif kind == "pbs":
            kwargs["resource_spec"] = f"select=1:ncpus={kwargs['cores']}:ngpus={gpus}:mem={kwargs['memory']}"
    kwargs["worker_extra_args"] = extra
    base = getattr(dask_jobqueue, cls)
    refused: list[str] = []
    cluster = base(job_cls=_recording_refusals(base.job_cls, refused), **kwargs)
    cluster.refused = refused      # the batch system's answers to the submissions that failed since the last success
    return cluster


def _recording_refusals(job_cls, refused: list[str]):
    """A job class that records why a submission failed (sbatch's error): otherwise only a traceback in the log."""

    class Job(job_cls):
        async def start(self):
            try:
                await super().start()
            except Exception as err:
                text = str(err)
                refused.append(text.split("stderr:", 1)[-1].strip() or text)
                raise
            refused.clear()

    Job.__name__ = Job.__qualname__ = job_cls.__name__
    return Job


def lifetime_args(kind: str, opts: dict) -> list[str]:
    """dask worker flags that retire a batch worker before its walltime (--lifetime, or derived from --walltime).

    No --lifetime-restart: a worker restarted inside its job would be killed by the walltime moments later; the
    adaptive scaling submits a fresh job instead.
    """
    lifetime, stagger = batch_lifetime(kind, opts)
    return ["--lifetime", f"{int(lifetime)}s", "--lifetime-stagger", f"{int(stagger)}s"]


def lifetime_flag(opts: dict) -> str:
    """The flag that bounds this run's batch workers' lives: --lifetime where given, else --walltime."""
    return "--lifetime" if opts.get("lifetime") else "--walltime"


def batch_lifetime(kind: str, opts: dict) -> tuple[float, float]:
    """(lifetime, stagger) of this run's batch workers: --lifetime is the latest a worker retires, else derived."""
    if lifetime_flag(opts) == "--lifetime":
        latest = parse_duration(opts["lifetime"], kind, "--lifetime")
        stagger = min(0.05 * latest, 300.0)
        return max(latest - stagger, 1.0), stagger
    return worker_lifetime(parse_duration(opts["walltime"], kind))


def dashboard_link(cluster, client) -> str:
    """Where the dashboard is, from the socket it actually listens on (not the scheduler's network address)."""
    server = getattr(getattr(cluster, "scheduler", None), "http_server", None)
    if server is None or not getattr(server, "port", None):
        return client.dashboard_link         # an existing cluster: its own dashboard
    host = server.address
    if host in ("0.0.0.0", "::", ""):
        return f"http://{socket.gethostname()}:{server.port}/status (every interface)"
    if host.startswith("127.") or host == "::1":
        return (f"http://{host}:{server.port}/status (this machine only; from elsewhere: "
                f"ssh -N -L {server.port}:127.0.0.1:{server.port} {socket.gethostname()})")
    return f"http://{host}:{server.port}/status"
