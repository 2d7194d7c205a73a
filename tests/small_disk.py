"""A real small file system for tests of a full disk: a tmpfs of a given size (root only, else the test skips)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def mount_tmpfs(where: Path, size_kb: int, remount: bool = False) -> bool:
    """True when a tmpfs of that size is mounted at ``where`` (``remount``: resize the one there)."""
    opts = f"{'remount,' if remount else ''}size={size_kb}k"
    cmd = ["mount", "-o", opts, str(where)] if remount else ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)]
    return os.geteuid() == 0 and shutil.which("mount") is not None and subprocess.run(
        cmd, capture_output=True).returncode == 0


def unmount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True)


def fill(where: Path) -> None:
    """Write a file at ``where`` until its file system is full (ENOSPC)."""
    fd = os.open(where, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
