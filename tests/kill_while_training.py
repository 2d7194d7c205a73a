"""Run a `cli.py` command in a real process and SIGKILL it once it trains a given run again (last.pt written, no
metrics.json yet): how the tests cut a rerun of `ablate` or `robustness` short at its worst moment."""
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def kill_once_it_trains(args: list, run: Path, timeout: float = 120) -> None:
    """Start ``cli.py *args`` and kill it when ``run`` (a run folder) holds a last.pt and no metrics.json."""
    p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not ((run / "last.pt").is_file() and not (run / "metrics.json").exists()):
            assert p.poll() is None and time.monotonic() < deadline, f"the command did not start training {run}"
            time.sleep(0.2)
    finally:
        p.kill()
        p.wait()
