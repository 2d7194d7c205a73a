"""predict's --out folder: `predict.json`, the record of the models and the data that made the files beside it, and
which of an earlier call's files a later call into the same folder removes."""
from __future__ import annotations

import json
from pathlib import Path

from train.abaw_sample import Sample
from train.config import used_arrays
from train.ensemble import Member
from train.omg_table import OmgTable
from train.report import atomic

RECORD = "predict.json"


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


def write_record(out: Path, made: dict, written, failed) -> Path:
    """Remove the earlier call's files that this one did not write (remove_earlier), then write ``made`` as
    `predict.json` through a rename."""
    out.mkdir(parents=True, exist_ok=True)
    remove_earlier(out, written, failed)   # before the predict.json that replaces their listing
    path = out / RECORD
    atomic(path, lambda p: p.write_text(json.dumps(made, indent=1, default=str) + "\n"))
    return path


def written_before(out: Path) -> set[str]:
    """The file names an earlier call's `predict.json` in ``out`` lists as written (none if it is absent or
    unreadable); plain names in ``out`` only, so a hand-edited listing cannot reach outside it or predict.json."""
    try:
        names = json.loads((out / RECORD).read_text()).get("written") or []
    except (OSError, ValueError, AttributeError):
        return set()
    return {n for n in names if isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..", RECORD)}


def remove_earlier(out: Path, written, failed) -> None:
    """Make ``out`` hold this call's files only, as the predict.json about to be written says: an earlier call's files
    that this one did not write (other videos, or a video that failed now) would pass for this call's. Only the files
    an earlier predict.json lists, and a failed video's, are removed: anything else in the folder is the user's."""
    mine = {Path(p).name for p in written}
    stale = written_before(out) | {f"{video}{ext}" for video, _ in failed for ext in (".csv", ".png", ".txt")}
    for name in sorted(stale - mine):
        if (out / name).is_file():
            (out / name).unlink()
