"""One `train`, `ablate` or `robustness` at a time per run folder (--out).

Two runs into one folder (a SLURM array given one --out, a command launched twice, a job requeued while the first
still runs) each delete the other's files at their start (run_folder.resumable), write best.pt, last.pt, log.csv and
metrics.json in turn, and both exit 0 naming the folder: it then holds one of them, or a mix, and the other's
finished run is gone without a word. ablate and robustness also write one table for their cells, which a run into a
cell folder meanwhile would contradict. So a run holds an exclusive ``flock`` on ``<out>/run.lock`` while it runs,
and is refused up front when another process holds that folder, a folder above it (an ablate whose cell it would
train into), or one below it (a run in a cell of the ablate about to start).

A process's own holds do not refuse it: an ablate holds its folder and trains each cell under it, and a two-stream
train trains its single streams in OUT/spatial and OUT/temporal. flock conflicts between two open files even in one
process, so the folders this process holds are remembered (_HELD) and skipped.

Why flock, and why the lock file stays after the run: train/predict_lock.py (the kernel drops a flock however its
process ends, so no stale lock is left; a removed lock file would let two runs each hold "the" lock). The holder
writes who it is into the file, for the message of a run it refuses; the file is never one of a run's outputs.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from features.errors import BadInputError

LOCK = "run.lock"
_HELD: set[Path] = set()   # folders this process holds: its own runs inside them go on


@contextmanager
def held(out: str | Path, command: str):
    """Hold ``out``'s lock while the block runs (``out`` is created); BadInputError, before anything is written,
    when another process holds it or a folder above or below it. Released when the block ends, or by the kernel
    when the process dies."""
    out = Path(out).resolve()
    if out in _HELD:   # this process holds it already (re-entered): nothing more to take
        yield out
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd, fcntl.LOCK_EX):
            _refuse(out, out)
        # after taking its own: of two runs that start together in nested folders, the later sees the earlier
        _refuse_if_busy(out)
        _write_holder(fd, command)
        _HELD.add(out)
        try:
            yield out
        finally:
            _HELD.discard(out)
    finally:
        os.close(fd)   # closing the only descriptor releases the lock


def _refuse_if_busy(out: Path) -> None:
    """Refuse when another process holds a folder above ``out`` or one below it (its own holds are skipped)."""
    for up in out.parents:
        if up in _HELD:
            break   # this process's own hold: every folder above it was checked when it was taken
        if (up / LOCK).is_file() and _held_elsewhere(up / LOCK):   # an ablate or robustness whose cell this is
            _refuse(out, up)
    if out.is_dir():
        for lock in out.rglob(LOCK):
            if lock.parent != out and _held_elsewhere(lock):
                _refuse(out, lock.parent)


def _held_elsewhere(lock: Path) -> bool:
    """Whether another open file holds ``lock`` now (probed by taking and dropping it at once)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        return not _try_lock(fd, fcntl.LOCK_SH)   # shared: two probes never refuse each other
    finally:
        os.close(fd)


def _try_lock(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:   # EWOULDBLOCK: held by another open file, i.e. another run
        return False


def _write_holder(fd: int, command: str) -> None:
    """Who holds the folder, for the message of a run refused there."""
    record = {"command": command, "host": socket.gethostname(), "pid": os.getpid(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)


def _refuse(out: Path, where: Path) -> None:
    try:
        h = json.loads((where / LOCK).read_text() or "{}")
    except (OSError, ValueError):
        h = {}
    what = h.get("command", "?")
    who = (f"{'an' if what[0] in 'aeiou' else 'a'} `{what}` run (host {h.get('host', '?')}, pid {h.get('pid', '?')}, started "
           f"{h.get('started', '?')}: {h.get('argv', '?')})" if h else "another run (not yet recorded)")
    place = "this folder" if where == out else (f"{where}, a folder above it" if where in out.parents
                                                else f"{where}, a folder inside it")
    raise BadInputError(out, f"{who} is writing in {place} (it holds {where / LOCK}); two runs there would delete "
                        "and overwrite each other's checkpoints, metrics and tables",
                        "wait for it to finish, or give this run another --out")
