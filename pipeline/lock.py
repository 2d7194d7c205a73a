"""One `features` run at a time per cache and dataset: a lock file held by the client.

The lock is ``<cache>/<dataset>/features.lock``, a small JSON file naming the host, pid, start time and a random
token of the run that holds it, and a heartbeat the client refreshes every HEARTBEAT_S seconds. It belongs to the
client: workers (maybe on other hosts) write groups on a shared file system, the client plans, writes the index
and holds the lock. A lock is stale, and taken over, when its holder is gone:

- same host: its pid no longer runs (or runs another program, started after the lock: a reused pid);
- other host: its heartbeat is older than STALE_AFTER_S (the pid cannot be checked from here).

Creation is atomic (O_CREAT | O_EXCL, which NFS v3+ honours). A takeover renames the stale file to a name of its
own first, so of two runs that find the same stale lock only one takes it over.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from features.errors import BadInputError

HEARTBEAT_S = 15.0
STALE_AFTER_S = 120.0   # eight missed heartbeats: a client that is alive always refreshes well within this
POLL_S = 1.0
COMMAND_CHARS = 8000    # a command this long is kept whole (a batch run's flags alone pass 200 characters)


class CacheBusy(BadInputError):
    """Another `features` run holds this cache and dataset."""


def lock_path(cache: str | Path, dataset: str) -> Path:
    """Where the lock of one dataset of a cache lives."""
    return Path(cache) / dataset / "features.lock"


def read_lock(path: Path) -> dict | None:
    """The holder's record, or None when there is no lock (a half-written one reads as an empty record)."""
    try:
        return json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        return {}


def describe(holder: dict) -> str:
    """'host H, pid P, started T' of a lock record."""
    return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started {holder.get('started', '?')}"
            + (f" ({holder['command']})" if holder.get("command") else ""))


def is_stale(holder: dict, now: float | None = None) -> bool:
    """Whether the run that wrote this lock record is gone."""
    now = time.time() if now is None else now
    if not holder.get("token"):   # unreadable or half-written: old enough means its writer died while writing
        return now - float(holder.get("mtime") or 0) > STALE_AFTER_S
    if holder.get("host") == socket.gethostname():
        return not _same_process_alive(int(holder.get("pid", -1)), float(holder.get("pid_started") or 0))
    return now - float(holder.get("heartbeat") or 0) > STALE_AFTER_S


def _same_process_alive(pid: int, started: float) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and (not started or abs(proc.create_time() - started) < 1.0)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _kept(command: str) -> str:
    """The holder's command as `info` shows it, to rerun: whole, or visibly cut (a cut one once read as complete,
    `... --walltime 00:1` for `--walltime 00:10:00`, under "rerun that command")."""
    if len(command) <= COMMAND_CHARS:
        return command
    return f"{command[:COMMAND_CHARS]} ... ({len(command) - COMMAND_CHARS} more characters cut)"


def command_line(argv: list[str]) -> str:
    """This process's command line, quoted as a shell reads it (paths with spaces), for the lock record."""
    import shlex

    return shlex.join(argv)


class FeaturesLock:
    """Held by one `features` client for one cache and dataset; refreshes its heartbeat in a thread."""

    def __init__(self, cache: str | Path, dataset: str, command: str = ""):
        import psutil

        self.path = lock_path(cache, dataset)
        self.record = {"host": socket.gethostname(), "pid": os.getpid(),
                       "pid_started": psutil.Process().create_time(),
                       "started": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
                       "token": uuid.uuid4().hex, "command": _kept(command)}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def acquire(self, wait_s: float = 0.0, echo=print) -> FeaturesLock:
        """Take the lock; wait up to wait_s seconds for a running holder, else raise CacheBusy naming it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max(0.0, wait_s)
        said = False
        while True:
            if self._try_create():
                break
            holder = self._holder()
            if holder is not None and is_stale(holder):
                if self._take_over(holder):
                    echo(f"note: took over the lock of a features run that is gone ({describe(holder)})")
                    break
                continue
            if holder is None:
                continue
            if time.monotonic() >= deadline:
                raise CacheBusy(self.path, f"another features run is using this cache and dataset ({describe(holder)})",
                                "wait for it to finish, or pass --wait-for-lock SECONDS to wait for it")
            if not said:
                echo(f"waiting up to {wait_s:.0f} s for the features run holding {self.path} ({describe(holder)})")
                said = True
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())) or 0.01)
        self._thread = threading.Thread(target=self._beat, name="features-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _holder(self) -> dict | None:
        holder = read_lock(self.path)
        if holder is not None and not holder.get("token"):
            with contextlib.suppress(OSError):
                holder["mtime"] = self.path.stat().st_mtime
        return holder

    def _blob(self) -> bytes:
        return json.dumps({**self.record, "heartbeat": time.time()}).encode()

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(self._blob())
            f.flush()
            os.fsync(f.fileno())
        return True

    def _take_over(self, stale: dict) -> bool:
        """Move the stale lock aside (one mover wins), check it was the one judged stale, then create ours."""
        aside = self.path.with_name(f"{self.path.name}.{self.record['token']}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False   # someone else moved it first: start over
        moved = read_lock(aside) or {}
        if moved.get("token") != stale.get("token"):   # a fresh lock replaced the stale one meanwhile: put it back
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
            with contextlib.suppress(OSError):
                os.unlink(aside)
            return False
        os.unlink(aside)
        return self._try_create()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            holder = read_lock(self.path)
            if not holder or holder.get("token") != self.record["token"]:
                self.lost = True   # taken over (we looked dead): stop refreshing someone else's lock
                return
            tmp = self.path.with_name(f"{self.path.name}.{self.record['token']}.tmp")
            tmp.write_bytes(self._blob())
            os.replace(tmp, self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = read_lock(self.path)
        if holder and holder.get("token") == self.record["token"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __enter__(self) -> FeaturesLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
