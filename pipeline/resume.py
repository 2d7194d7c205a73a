"""A half-done video: the progress record its group keeps, and whether a rerun (or a retry) may resume it.

A video is extracted in blocks of `--chunk-frames` frames (pipeline/compute.py). After each block every array has
its rows up to the block's end, and the writer records in the group's attrs (``progress``, one atomic write of
zarr.json) what continuing from there needs:

- ``frames``: where the next attempt starts, and ``rows``: each array's length then (the labels are written last);
- ``identity``: what the rows were made under: every array's fingerprint, the motion variants' settings, the video
  file's and the face source's identity, device, threads and library versions. A rerun resumes only when its own is
  the same; otherwise the group is deleted and the video started over, and the run says why;
- ``state``: the face tracker's state after the block's last frame (features.face.FaceTracker.state, exact in
  JSON) and the paper ΔPhase variant's integer turns there. The rest comes from the rows already written: the
  landmark smoother's history (the raw landmarks and valid flags of the frames just before), the last face48 row
  that ΔPhase and flow difference against. Gamma jitter is drawn per frame, and ResNet50 batches are fixed by frame
  number, so nothing else depends on where a run started.

Hence a resumed video's arrays equal an uninterrupted run's bit for bit (tests/test_resume.py), and any video
finishes, however short the walltime, as long as one block fits in a worker's life. A group being written has
status "writing" until its last write: readers (train, predict, export, inspect) never take it, and `plan` never
calls it done. New videos are written in place (<dataset>/videos/<video>); a rebuild of a done group is written
beside it, in <dataset>/.staging/<video>.full, and swapped in when complete.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

from pipeline import store

KEY = "progress"
RESUMES = "the next `features` run resumes there"


def _legacy_as_now(old: dict, ident: dict, video: Path | None) -> dict:
    """A record made before sources were identified by contents holds `[size, mtime]` legacy identities of the video
    and the OpenFace CSV: where they still match those files, read them as this run's identities (the same files),
    so an interrupted extraction resumes across the upgrade instead of starting over."""
    from pipeline import sources

    old = dict(old)
    src = old.get("source")
    if sources.is_legacy(src) and video is not None and video.is_file() and sources.legacy_matches(src, video):
        old["source"] = ident.get("source")
    face, now = dict(old.get("face_source") or {}), ident.get("face_source") or {}
    if sources.is_legacy(face.get("identity")) and now.get("path") and Path(now["path"]).is_file() \
            and sources.legacy_matches(face["identity"], Path(now["path"])):
        old["face_source"] = {**face, "identity": now.get("identity")}
    return old


def _placeless(ident: dict) -> dict:
    """An identity without where the face input lies: a crop folder or OpenFace CSV is identified by its contents
    (faces.origin), as the video is, so a dataset moved or copied mid-extraction (a node's scratch) resumes where it
    stopped instead of starting the video over. The done-group check ignores the path likewise (faces.origin_change)."""
    face = ident.get("face_source")
    if not isinstance(face, dict) or "path" not in face:
        return ident
    return {**ident, "face_source": {k: v for k, v in face.items() if k != "path"}}


def rebuild_dir(cache, dataset: str, video: str) -> Path:
    """Where a done group's rebuild from its video is written, the same for every attempt (so it can resume)."""
    return store.video_dir(cache, dataset, video).parent.parent / ".staging" / f"{video}.full"


def identity(want: dict, motion: dict, entry, s) -> dict:
    """What a partial group's rows must have been made under for this run to go on writing it."""
    from pipeline import faces, settings
    from pipeline.extract import source_identity

    path = entry.path
    return _json({"want": want, "motion": motion, "face_source": faces.origin(s, entry),
                  "source": source_identity(path) if path is not None and path.is_file() else None,
                  "device": s.device, "threads": s.threads, "libraries": settings.libraries()})


def _json(value):
    """As it reads back from zarr.json (None keys become "null", tuples lists). Keys are made strings first, as
    json.dumps would: sort_keys cannot order the default variant's None key beside named variants' str keys."""
    return json.loads(json.dumps(_str_keys(value), sort_keys=True, default=str))


def _str_keys(value):
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_str_keys(v) for v in value]
    return value


def record(frames: int, ident: dict, faces_state: dict, computers) -> dict:
    """The progress record after a block: where to resume, under what, and the state there."""
    return {"frames": int(frames), "identity": ident,
            "state": {"faces": faces_state, "motion": {c.key: c.snapshot() for c in computers}}}


def resumable(path: Path, ident: dict, video: Path | None = None) -> tuple[dict | None, str]:
    """(the record to resume from, or None; why) for a partial group at `path`; `video`: the entry's video file."""
    try:
        g = zarr.open_group(LocalStore(path, read_only=True), mode="r")
        attrs = dict(g.attrs)
    except Exception:
        return None, "no readable group"
    rec = attrs.get(KEY)
    if attrs.get("status") != "writing" or not rec:
        return None, "no complete block was written"
    old, ident = _placeless(_legacy_as_now(rec.get("identity") or {}, ident, video)), _placeless(ident)
    differ = sorted(k for k in set(old) | set(ident) if old.get(k) != ident.get(k))
    if differ:
        detail = differ
        if "want" in differ:   # name the arrays whose fingerprints differ
            a, b = old.get("want") or {}, ident["want"]
            detail = [d for d in differ if d != "want"] + [f"{n} fingerprint" for n in sorted(set(a) | set(b))
                                                          if a.get(n) != b.get(n)]
        return None, f"its {rec.get('frames')} frames were made under other settings ({', '.join(detail)})"
    for name, n in rec["rows"].items():
        if name not in g or g[name].shape[0] < n:
            return None, f"{name} has fewer rows than its progress record says"
    return rec, f"{rec['frames']} frames were done"


def restore(group, rec: dict, computers, s) -> dict:
    """Set the computers to where the record was taken; the face source's resume state (with the smoother's
    history read back from the group)."""
    from features.smooth_align import SmoothAligner

    b = int(rec["frames"])
    lo = max(0, b - SmoothAligner(s.align_smooth).r)
    last_face, last_valid = np.asarray(group["face48"][b - 1]), bool(group["valid"][b - 1])
    for c in computers:
        c.restore(last_face, last_valid, rec["state"]["motion"][c.key], b)
    return {**rec["state"]["faces"], "landmarks": np.asarray(group["landmarks"][lo:b]),
            "valid": np.asarray(group["valid"][lo:b])}


def saved_frames(cache, dataset: str, video: str) -> int:
    """Frames of a video saved by its unfinished extraction (in place or a rebuild beside its group); 0 if none."""
    for path in (store.video_dir(cache, dataset, video), rebuild_dir(cache, dataset, video)):
        try:
            attrs = zarr.open_group(LocalStore(path, read_only=True), mode="r").attrs
            if attrs.get("status") == "writing" and attrs.get(KEY):
                return int(attrs[KEY]["frames"])
        except Exception:
            continue
    return 0


def saved_note(cache, dataset: str, video: str) -> str:
    """' (N frames saved: the next `features` run resumes there)' for a video with saved blocks, else ''."""
    saved = saved_frames(cache, dataset, video)
    return f" ({saved} frames saved: {RESUMES})" if saved else ""


def clean_staging(cache, dataset: str) -> None:
    """Remove what killed or failed tasks left in .staging, but the resumable rebuilds (<video>.full)."""
    root = store.dataset_dir(cache, dataset) / ".staging"
    if root.is_dir():
        for d in root.iterdir():
            if not d.name.endswith(".full"):
                shutil.rmtree(d, ignore_errors=True)


def drop_rebuild(cache, dataset: str, video: str) -> None:
    """Remove a video's partial rebuild (its done group needs none now)."""
    shutil.rmtree(rebuild_dir(cache, dataset, video), ignore_errors=True)


def partial_videos(cache, dataset: str) -> dict[str, int]:
    """{video: frames saved} of the videos whose extraction was interrupted (in place or a rebuild beside)."""
    root = store.dataset_dir(cache, dataset)
    names = [d.name for d in (root / "videos").iterdir()] if (root / "videos").is_dir() else []
    names += [d.name[:-len(".full")] for d in (root / ".staging").glob("*.full")] if (root / ".staging").is_dir() else []
    out = {}
    for video in sorted(set(names)):
        frames = saved_frames(cache, dataset, video)
        if frames:
            out[video] = frames
    return out
