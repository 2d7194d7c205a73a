"""Arrays made from a cache's own faces, without videos or the dataset's manifest: the gamma-corrupted motion inputs
of the robustness experiment (train/robustness.py), stored as variants (``dphase@gamma0.2``, ``flow@gamma0.2``).

Each video's wanted fingerprint comes from the face fingerprint its own group records (``settings.array_fingerprint``,
the one rule `features` uses too), so an array made here equals, fingerprint and values, the one
`features --motion-variant gamma0.2` makes from the same faces; a rerun finds them current and does nothing.
They are built by ``extract.build`` (beside the group, swapped in when complete), under the dataset's features lock,
and the index rows are rebuilt from the groups afterwards.
"""
from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from features.errors import BadInputError
from pipeline import arrays, extract, face_transforms, graph, settings, store
from pipeline.features_cmd import recorded_variant
from pipeline.lock import FeaturesLock, command_line
from pipeline.manifest import VideoEntry
from pipeline.wording import counted


def motion_overrides(cache, dataset: str, variant: str | None) -> dict:
    """The MotionConfig overrides of a variant's motion part: built in, recorded in the cache, or the defaults."""
    base = face_transforms.motion_part(variant)
    if base is None:
        return {}
    if base in arrays.MOTION_VARIANTS:
        return dict(arrays.MOTION_VARIANTS[base])
    recorded = recorded_variant(Path(cache), dataset, base)
    if recorded is None:
        make = store.repair_command(cache, dataset, [arrays.array_name(p, base) for p in arrays.KINDS["dphase"].parts])
        raise BadInputError(store.dataset_dir(cache, dataset), f"the cache holds no motion variant {base!r}",
                            f"make it first: `{make}` with the --motion-... flags that define it")
    return recorded


def stale_arrays(cache, dataset: str, video: str, names: list[str], motion: dict) -> dict[str, str]:
    """{array: wanted fingerprint} of the arrays of one video that are missing, stale or made otherwise.

    An array held under other motion settings (a plain dphase made with a mean window) is refused, not replaced: the
    conflict rule of `features` (extract.motion_conflicts), which replaces it only with --replace-variant.
    """
    store.check_arrays(cache, dataset, video, ["valid", "face48"])   # the faces everything here is made from
    g = store.open_video(cache, dataset, video)
    have = dict(g.attrs.get("fingerprints", {}))
    bad = store.unusable_arrays(g)
    conflicts, why = extract.motion_conflicts(g, bad, names, motion)
    if conflicts:
        # one command per motion variant (a run keeps only its last --motion-variant), each with --replace-variant
        raise BadInputError(store.video_dir(cache, dataset, video), why,
                            "--replace-variant remakes them with the settings asked: "
                            + store.repair_hint(cache, dataset, conflicts, every=["--replace-variant"]))
    want = {n: settings.array_fingerprint(n, have["face48"], motion[arrays.split_name(n)[1]]) for n in names}
    return {n: fp for n, fp in want.items() if have.get(n) != fp or n in bad}


def derive(cache, dataset: str, names: list[str], *, videos: list[str] | None = None, device: str = "cpu",
           progress: bool = True, echo=print, wait_for_lock: float = 0.0) -> dict[str, int]:
    """Make these face48-derived arrays for every done video of a dataset (or of ``videos``) where they are not current.

    Returns {"videos": videos considered, "updated": videos updated}. A video whose faces cannot be read stops the
    run with the command that repairs it (what was built before it is kept).
    """
    cache = Path(cache)
    names = list(dict.fromkeys(names))
    for n in names:
        if arrays.source_of(n) != "face48":
            raise BadInputError(None, f"{n} is not made from the cached 48x48 faces", "derive motion arrays only")
    motion = {arrays.split_name(n)[1]: motion_overrides(cache, dataset, arrays.split_name(n)[1]) for n in names}
    done = list(store.done_videos(cache, dataset).video)
    asked = None if videos is None else set(videos)
    videos = done if asked is None else [v for v in done if v in asked]
    if not any(stale_arrays(cache, dataset, v, names, motion) for v in videos):
        return {"videos": len(videos), "updated": 0}   # all current: no lock needed to read them
    s = settings.Settings(stages=("align",), device=device)
    rows = []
    with FeaturesLock(cache, dataset, command_line(sys.argv)).acquire(wait_for_lock, echo) as lock:
        todo = [(v, st) for v in videos if (st := stale_arrays(cache, dataset, v, names, motion))]   # under the lock
        total = sum(int(store.open_video(cache, dataset, v).attrs["n_frames"]) for v, _ in todo)
        bar = tqdm(total=total, desc=f"{dataset}: {counted(len(todo), 'video')} from cached faces", unit="frame",
                   disable=not progress, file=sys.stderr)
        try:
            for video, stale in todo:
                attrs = dict(store.open_video(cache, dataset, video).attrs)
                entry = VideoEntry(video, Path(attrs.get("source") or store.video_dir(cache, dataset, video)),
                                   str(attrs.get("split") or ""))
                p = extract.Plan("update", stale, needs_video=False, beside=True, motion=motion,
                                 reason="recompute " + ",".join(stale))
                extract.build(cache, dataset, entry, s, p, bar.update)
                rows.append({"video": video, "split": entry.split, "source": str(entry.path), "action": "update"})
        finally:
            bar.close()
            if rows:
                graph.update_index(cache, dataset, rows, lock)
    return {"videos": len(videos), "updated": len(rows)}
