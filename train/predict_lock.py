"""One `predict` call at a time per --out folder.

Two calls into one folder would each clean up the other's staging folder (train/predict_out.py: a call's recover
removes a staging folder without a record, which is what a call still writing looks like) and both would replace the
folder's files. So a call holds an exclusive ``flock`` on ``<out>/predict.lock`` from its first write into the folder
(the extraction into <out>/cache, or recover) to its end, and a second call is refused there, before minutes of
extraction or prediction; a call refused by its own checks before that creates no folder.

Why flock and not pipeline/lock.py's `features` lock: that one is a file whose presence is the lock, with a heartbeat
so that a lock left by a killed client (on any host of a cluster) is recognised and taken over. A flock belongs to
the open file and the kernel drops it when the process ends, however it ends (SIGKILL, OOM, a time limit), so no
stale lock can be left and nothing needs taking over. Linux NFS clients pass flock to the server as a whole-file
POSIX lock, so it also holds between hosts that share the folder.

The lock file stays in the folder after the call: removing it would let a call that opened the old file before the
removal and one that creates a new file both hold "the" lock. It is empty; move_in never removes it (predict_out._plain).
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from features.errors import BadInputError

LOCK = "predict.lock"


@contextmanager
def held(out: str | Path):
    """Hold ``out``'s lock while the block runs (``out`` is created if missing); BadInputError if another call holds
    it. Released when the block ends, or by the kernel when the process dies."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:   # EWOULDBLOCK: held by another open file, i.e. another call
            raise BadInputError(out, "another predict is writing there (it holds "
                                f"{out / LOCK}); its files and cleanup would clash with this call's",
                                "wait for it to finish, or give this call another --out") from None
        yield out
    finally:
        os.close(fd)   # closing the only descriptor releases the lock
