"""When a `predict` from a cache may return what it wrote before instead of running the models again (ablate's
fold-mean cells, which every rerun of an `ablate` command would otherwise predict anew: on a real test set and five
fold models that is minutes a cell, where the training runs themselves are reused).

The files in an output folder were made from exactly what ``identity`` digests: the models (by sha256, and their
paths, which predict.json names), the cache, dataset, split, format, rescaling and sample, and per video the
fingerprints of every array read (labels included: their digest follows the annotation's contents) and its group's
source record (frames and the content identities of the video and face source: fingerprints say how arrays were
made, not from what). `predict.json` records the digest; a later call with the same one finds its files and
scores there. Anything else, or a file gone, runs the models.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import store
from train.videos import source_record

# bump when what predict writes or how it scores changes, so older folders are not reused (2: the ABAW files of test
# entries reach their last organiser crop)
VERSION = "2"


def identity(members, cache, dataset: str, split: str | None, fmt: str, rescaled: bool, sample,
             per_video: dict[str, dict], failed: list[tuple[str, str]]) -> str:
    """The digest of what a predict run reads (module docstring); ``per_video`` {video: fingerprints read}."""
    videos = {v: [fps, source_record(store.open_video(cache, dataset, v).attrs)] for v, fps in per_video.items()}
    models = sorted((m.sha, str(m.path.resolve())) for m in members)   # the paths too: predict.json names them
    return store.fingerprint(VERSION, models, str(Path(cache).resolve()), dataset, split,
                             fmt, bool(rescaled), sample.describe() if sample is not None else None, videos,
                             sorted(v for v, _ in failed))


def done_before(out: Path, ident: str) -> dict | None:
    """predict_cache's result as `predict.json` in ``out`` recorded it, when it was made from ``ident`` and every
    file it lists is still there; else None."""
    try:
        made = json.loads((out / "predict.json").read_text())
    except (OSError, ValueError):
        return None
    written = [out / name for name in made.get("written") or []]
    if made.get("identity") != ident or not all(p.is_file() for p in written):
        return None
    return {"written": written, "failed": list((made.get("failed") or {}).items()), "notes": made.get("notes") or {},
            "scores": made.get("scores"), "rescaled": bool(made.get("rescaled")), "reused": True,
            "not_updated": made.get("not_updated") or {}}
