"""predict's --out folder: `predict.json`, the record of the models and the data that made the files beside it, and
how a call replaces what an earlier call left there, so that a kill at any moment (SIGKILL, a SLURM time limit, OOM:
no handler runs) never leaves a record beside files it did not make, nor unfinished files in the folder.

A call writes its files, and then its record, into `<out>/predict.unfinished/` (STAGING): until its record is there
the folder is as the last finished call left it, its files and its record in agreement. The staged record, written
through a rename, marks the call's files complete; then they move in (move_in): the earlier record leaves the folder
first (into the staging folder, where it still says which files are the earlier call's), the earlier files this call
did not make are removed, this call's files come in by renames, its record last. So a kill before the mark leaves
the folder as it was, beside an unfinished staging folder that the next call into ``out`` removes (recover); a kill
during the move (a few renames) leaves no record in the folder and a staging folder that says what is left to do,
which the next call finishes before anything else."""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

from features.errors import BadInputError
from train.abaw_sample import Sample
from train.config import used_arrays
from train.ensemble import Member
from train.omg_table import OmgTable
from train.predict_lock import LOCK
from train.report import atomic

RECORD = "predict.json"
STAGING = "predict.unfinished"   # a call's files until they are all written: the name says so to whoever looks
EARLIER = "earlier.json"         # in STAGING, during the move: the replaced record, naming the files to remove


def record(members: list[Member], cache, dataset: str, split: str | None, fmt: str, names: list[str], result: dict,
           sample: Sample | OmgTable | None = None) -> dict:
    """What `predict.json` says of the files in the folder (train/predict.py's docstring). With one model its
    checkpoint, sha256, trained_on and config are also at the top, as before models were averaged."""
    first = members[0].ck
    return {**(members[0].describe() if len(members) == 1 else {}),
            "models": [m.describe() for m in members],
            "combined": "one model" if len(members) == 1 else f"mean of {len(members)} models' predictions",
            "cache": str(Path(cache).resolve()), "dataset": dataset, "split": split,
            "format": fmt, "fingerprints": {**_fingerprints(members, names), "valid": first["fingerprints"].get("valid")},
            "written": sorted(str(Path(p).name) for p in result["written"]),
            "failed": {video: why for video, why in result["failed"]}, "notes": result.get("notes") or {},
            "not_updated": result.get("not_updated") or {},   # video -> the error of its last `features` run
            "scores": result.get("scores"),
            "rescaled": ({"label_std": [m.ck["label_std"] for m in members], "how": "each model's predictions over "
                          "the set, mean + (p - mean) * label_std / std(p), before their mean (train/rescale.py)"}
                         if result.get("rescaled") else None),
            "abaw_sample": sample.describe() if isinstance(sample, Sample) else None,
            "omg_table": sample.describe() if isinstance(sample, OmgTable) else None,
            "identity": result.get("identity")}   # what made the files, digested (train/predict_reuse.py)


def _fingerprints(members: list[Member], names: list[str]) -> dict:
    """Each array the models read, under the fingerprint it was trained on (checked equal to the data read)."""
    out = {}
    for m in members:
        out.update({k: m.ck["fingerprints"].get(k) for k in used_arrays(m.cfg)})
    return {k: out[k] for k in names if k in out}


def recover(out: Path) -> None:
    """Finish the move of a call killed while moving its files in; remove the staging folder of one killed before its
    files were all written (module docstring)."""
    stage = out / STAGING
    if (stage / RECORD).is_file():
        move_in(out)
    elif stage.exists():
        shutil.rmtree(stage)


@contextmanager
def staged(out: Path):
    """The empty staging folder of a call into ``out`` (after recover), where its files go; removed if the call
    raises before its record is staged (an error, Ctrl-C), which leaves ``out`` as it was."""
    recover(out)
    stage = out / STAGING
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        discard(out)
        raise


def discard(out: Path) -> None:
    """Remove a staging folder whose record is not written yet (one that has it is finished by the next call)."""
    stage = out / STAGING
    if stage.exists() and not (stage / RECORD).is_file():
        shutil.rmtree(stage)


def publish(out: Path, made: dict, written) -> list[Path]:
    """Stage ``made`` as the call's record (the mark that its files are whole), then move them in; the paths in
    ``out`` of the staged files ``written``."""
    stage = out / STAGING
    atomic(stage / RECORD, lambda p: p.write_text(json.dumps(made, indent=1, default=str) + "\n"))
    move_in(out)
    return [out / Path(p).name for p in written]


def move_in(out: Path) -> None:
    """Move a staged call's files into ``out`` in an order a kill may stop anywhere (module docstring); run again on
    what a kill left, it does the rest. Only the files the earlier record lists, and a failed video's, are removed:
    anything else in the folder is the user's. Something in the way (a folder where a file must go, a folder that is
    not writable) stops it with an error naming the path: every later call into ``out`` starts here (recover), so a
    bare OSError would stop each of them without saying what to do."""
    try:
        _move_in(out)
    except OSError as e:
        where = e.filename2 or e.filename or out   # a rename's destination, else the file it failed on
        raise BadInputError(where, f"cannot move a finished predict call's files from {out / STAGING} into {out}: "
                            f"{e.strerror or e}", f"move {where} out of the way, then run predict into {out} "
                            "again: it moves those files in before anything else") from e


def _move_in(out: Path) -> None:
    stage = out / STAGING
    if (out / RECORD).is_file():
        (out / RECORD).replace(stage / EARLIER)   # from here no record in the folder, until this call's
    mine = written_before(stage)
    failed = json.loads((stage / RECORD).read_text()).get("failed") or {}
    stale = written_before(stage, EARLIER) | _plain(f"{video}{ext}" for video in failed for ext in (".csv", ".png", ".txt"))
    for name in sorted(stale - mine):   # an earlier call's files this one did not make would pass for this call's
        if (out / name).is_file():
            (out / name).unlink()
    for name in sorted(mine):
        if (stage / name).is_file():   # else moved in before a kill
            (stage / name).replace(out / name)
    (stage / RECORD).replace(out / RECORD)
    shutil.rmtree(stage)


def written_before(out: Path, name: str = RECORD) -> set[str]:
    """The file names a record (``out``/predict.json, or ``name``) lists as written (none if it is absent or
    unreadable); plain names only, so a hand-edited listing cannot reach outside the folder, its record or the lock
    file (removed while held, a later call would lock a new file beside the holder: train/predict_lock.py)."""
    try:
        names = json.loads((out / name).read_text()).get("written") or []
    except (OSError, ValueError, AttributeError):
        return set()
    return _plain(names)


def _plain(names) -> set[str]:
    return {n for n in names if isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..", RECORD, STAGING, LOCK)}
