"""A run's folder: the files it holds, and whether what is there is a finished run to reuse, an unfinished one to
resume, or an older run's to delete before a fresh start (train/trainer.py's ``start`` and ``train`` ask here).

A folder with a metrics.json of this run's identity holds a finished run (metrics.json is written last, report.py);
last.pt of this identity is an unfinished one, resumable only while best.pt still stands for the best epoch it
records; anything else goes before a fresh run writes its own files. last.pt and metrics.json also record the torch
threads and device each stretch of epochs trained under (``threads_used``): torch's CPU reductions split their sums
by thread, so a resume under others is not bit for bit an uninterrupted run's, and says so.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from features.errors import BadInputError
from train import checkpoint, config, report
from train.config import TrainConfig

if TYPE_CHECKING:
    from train.trainer import Fit, Run


def say(cfg: TrainConfig, msg: str, always: bool = False) -> None:
    if always or not cfg.quiet:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- reuse


# Every file a run writes in its folder (not its single-stream sub-runs' folders, which have their own identity).
OUTPUTS = ("best.pt", "last.pt", *report.OUTPUTS)


def reusable(run: Run) -> dict | None:
    """The saved metrics of a finished run of this identity, with cfg.reuse, or with --resume when no last.pt is left
    to resume from (a finished run's is all there is: it is not trained again); None when it must be trained. A
    finished run of another identity is an error with --resume, as a changed flag is."""
    cfg, path = run.cfg, run.out / "metrics.json"
    finished = cfg.resume and not (run.out / "last.pt").is_file()
    if not ((cfg.reuse or finished) and path.is_file()):
        return None
    saved = report.read_metrics(path)
    if saved is None:
        say(cfg, f"{path}: unreadable (cut short by a kill?), so the run is not finished; training it again",
            always=True)
        return None
    diff = config.differences(saved.get("identity") or {}, run.identity)
    if not diff:
        say(run.cfg, f"{run.out}: done with the same settings and data; reused" if cfg.reuse else
            f"{run.out}: finished already (no last.pt to resume from); its metrics.json is returned", always=finished)
        return _known_now(run, saved, path)
    what = (config.describe(diff, saved["identity"], run.identity) if "identity" in saved else
            "an older mimamo made it without recording the settings and data it came from")
    if finished:
        raise BadInputError(path, f"--resume of a finished run made with a different configuration or data ({what})",
                            "resume with the flags and cache of that run, or drop --resume to train it again "
                            "(or use another --out)")
    say(run.cfg, f"{run.out}: made with other settings or data ({what}); training it again", always=True)
    return None


def _known_now(run: Run, saved: dict, path) -> dict:
    """The reused run's metrics with not_updated as known now of the arrays it read (the same arrays: its identity
    holds their fingerprints). A `features` update that failed after it trained left them as they were, and its
    metrics.json, ablate's table and the console note ("metrics.json lists it") must say so of this run too; one
    that succeeded since, with the arrays unchanged, clears it. metrics.json is rewritten only when that changed."""
    if (saved.get("not_updated") or {}) == run.sel.not_updated:
        return saved
    now = {**saved, "not_updated": run.sel.not_updated}
    report.write_metrics(path, now)
    return now


# ---------------------------------------------------------------- start


def resumable(run: Run) -> dict | None:
    """The resume check: last.pt when resuming (or reusing) a run of this identity; None starts afresh, after
    deleting every file an older run left in the folder (nothing of it stays beside the new run's files)."""
    cfg, last = run.cfg, run.out / "last.pt"
    ck = checkpoint.load(last) if (cfg.resume or cfg.reuse) and last.is_file() else None
    if ck is not None:
        saved = ck.get("identity") or {}
        diff = config.differences(saved, run.identity) if saved else ["identity"]
        if not diff:
            broken = no_best(run, ck["state"])
            if broken is None:
                return ck
            # its held-out scores would come from weights that are not the best epoch's
            if cfg.resume:
                raise BadInputError(last, f"cannot resume: {broken}", "drop --resume to train the run again from "
                                    "the start (or use another --out)")
            say(cfg, f"{run.out}: an unfinished run, but {broken}; starting afresh", always=True)
        else:
            what = (config.describe(diff, saved, run.identity) if saved else
                    "it was written by an older mimamo that did not record the whole configuration and data")
            if cfg.resume:
                raise BadInputError(last, f"--resume with a different configuration or data ({what})",
                                    "resume with the flags and cache of the interrupted run, or drop --resume to "
                                    "start afresh (or use another --out)")
            if not (run.out / "metrics.json").is_file():   # else `reusable` has said why already
                say(cfg, f"{run.out}: an unfinished run with other settings or data ({what}); starting afresh",
                    always=True)
    elif cfg.resume:
        say(cfg, f"{run.out}: nothing to resume (no last.pt); starting afresh", always=True)
    for stale in OUTPUTS:   # a fresh run never leaves an old run's files beside its own
        (run.out / stale).unlink(missing_ok=True)
        report.tmp_path(run.out / stale).unlink(missing_ok=True)   # a write cut short by a kill
    return None


def no_best(run: Run, state: dict) -> str | None:
    """Why best.pt cannot stand for the best epoch a checkpoint's ``state`` names (None when it can, or when no epoch
    has run): a resumed run that never beats that epoch again writes no new best.pt and would score without it."""
    epoch, path = state["best_epoch"], run.out / "best.pt"
    if epoch < 1:
        return None
    if not path.is_file():
        return f"the best epoch it records ({epoch}) has no best.pt"
    try:
        ck = checkpoint.load(path)
    except BadInputError as e:
        return f"best.pt is unreadable ({e.problem})"
    other = config.differences(ck.get("identity") or {}, run.identity)
    if ck.get("epoch") != epoch or other:
        return f"best.pt is not of the best epoch it records ({epoch}): it holds epoch {ck.get('epoch')}" + (
            " of another run" if other else "")
    return None


def other_threads(run: Run, f: Fit) -> None:
    """Warn when a resume trains under another thread count or device than the epochs before it (checkpoints
    written before they were recorded cannot be compared)."""
    before = (f.state.get("threads_used") or [None])[-1]
    if (before is None or f.state["epoch"] >= run.cfg.epochs or f.state["stopped"]
            or (before["threads"], before["device"]) == (f.threads, f.device.type)):
        return
    a, b = before["epochs"]
    say(run.cfg, f"{run.out}: resumed under {f.threads} torch thread(s) on {f.device.type}, where epochs {a}-{b} "
                 f"ran under {before['threads']} on {before['device']}: the resumed epochs will not equal an "
                 "uninterrupted run's bit for bit (metrics.json lists the threads of each stretch of epochs)",
        always=True)


def note_threads(state: dict, f: Fit, epoch: int, first: bool) -> None:
    """Record the thread count and device ``epoch`` trained under: an invocation's first epoch opens a stretch, the
    rest extend it (a resume's stretch stays apart even under the same count, showing where the run was resumed)."""
    runs = state.setdefault("threads_used", [])   # absent in checkpoints of older versions
    if first or not runs:
        runs.append({"epochs": [epoch, epoch], "threads": f.threads, "device": f.device.type})
    else:
        runs[-1]["epochs"][1] = epoch
