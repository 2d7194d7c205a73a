"""`cli.py info`: versions, device, datasets and their roots, and what a cache holds."""
from __future__ import annotations

import importlib.metadata as md
import platform
from pathlib import Path

from pipeline.manifest import load_manifest, resolve_root
from pipeline.wording import counted

PACKAGES = ("torch", "numpy", "scipy", "opencv-python-headless", "dlib-bin", "face-recognition-models",
            "zarr", "dask", "distributed", "pyarrow", "click")


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def describe(cache: Path | None = None) -> str:
    """A multi-line report for humans."""
    import torch

    lines = [f"mimamo {_version('mimamo')}  python {platform.python_version()}  ({platform.platform()})", "", "versions:"]
    lines += [f"  {d:26s} {_version(d)}" for d in PACKAGES]
    cuda = torch.cuda.is_available()
    dev = f"yes, {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if cuda else "no (CPU only)"
    lines += ["", f"CUDA available: {dev}", f"CPU threads:    {torch.get_num_threads()}", "", "datasets:"]
    for name, spec in sorted(load_manifest()["datasets"].items()):
        root, origin = resolve_root(name, spec)
        state = "ok" if root.is_dir() else "missing"
        lines.append(f"  {name:9s} {spec['layout']:9s} {str(root):40s} [{state}; from {origin}, set ${spec['root_env']}]")
    if cache is not None:
        lines += ["", f"cache {cache}:"] + _cache_lines(Path(cache))
    return "\n".join(lines)


def _cache_lines(cache: Path) -> list[str]:
    from pipeline import store, unindexed, unscored
    from pipeline.ids import id_problem
    from pipeline.resume import partial_videos
    from pipeline.store import UnreadableIndex, read_index

    if not cache.is_dir():
        return ["  (does not exist yet)"]
    if (cache / "index.parquet").is_file():   # not videos/: `features a.mp4` makes a dataset named videos
        return [f"  this is a dataset's folder inside a cache: give its parent, `info --cache {cache.parent}`"]
    out = []
    # hidden or odd folders (.ipynb_checkpoints, a copy's leftovers) are no dataset: features never makes them
    for ds_dir in sorted(p for p in cache.iterdir() if p.is_dir() and not id_problem(p.name)):
        try:
            idx = read_index(cache, ds_dir.name)
        except UnreadableIndex as e:   # say so and go on: the other datasets' status is still worth showing
            out.append(f"  {ds_dir.name:10s} {e}")
            continue
        partial = partial_videos(cache, ds_dir.name)
        orphans = unindexed.without_row(cache, ds_dir.name, idx)   # done groups the index does not list
        locked = _lock_lines(cache, ds_dir.name)   # a first run at work, or killed, before it saved a block
        if idx is None and not partial and not orphans and not locked:
            continue
        if idx is None:   # a first run killed (or still at work) before any video finished
            import pandas as pd

            idx = pd.DataFrame({"video": [], "status": [], "n_frames": [], "error": []})
        done = idx[idx.status == "done"]
        failed = idx[idx.status == "failed"]
        gone = sum(bool(store.open_video(cache, ds_dir.name, v).attrs.get(store.UNLISTED)) for v in done.video
                   if store.group_status(cache, ds_dir.name, v) == "done")   # pipeline/unlisted.py
        out.append(f"  {ds_dir.name:10s} {len(done)} done ({int(done.n_frames.sum())} frames), {len(failed)} failed"
                   + (f"; {gone} of the done no longer in the dataset (kept, used by no reader)" if gone else ""))
        if orphans:   # counted in no figure above: the index is what readers take their videos from
            out.append(f"    {len(orphans)} done group{'s' * (len(orphans) > 1)} without a row in index.parquet "
                       f"({unindexed.listing(orphans)}): no reader uses them (train refuses the dataset until they have "
                       f"rows, predict and export leave them out); {unindexed.hint(cache, ds_dir.name)}")
        out += locked
        out += lost_group_lines(cache, ds_dir.name, list(done.video), partial)
        if len(done):   # which splits the done videos are in (a test split without labels is extracted too)
            order = {"train": 0, "validation": 1, "test": 2}
            counts = done.split.astype(str).value_counts()
            unlabelled = sum(store.known_unlabelled(r) for r in done.to_dict("records"))
            out.append("    splits of the done: " + ", ".join(
                f"{k} {counts[k]}" for k in sorted(counts.index, key=lambda k: (order.get(k, 3), k)))
                + (f" ({unlabelled} of them without labels: not trained on)" if unlabelled else ""))
        # pipeline.unscored says what train and predict do with these videos: one wording for all three
        if len(done) and (line := unscored.cache_line(cache, ds_dir.name, done.to_dict("records"))):
            out.append(line)
        out += label_root_lines(cache, ds_dir.name)
        sources = face_sources(cache, ds_dir.name)
        if sources:
            out.append("    faces from: " + "; ".join(f"{what} ({counted(n, 'video')})" for what, n in sources.items()))
        refused = refused_labels(cache, ds_dir.name)
        present = arrays_present(cache, ds_dir.name, refused)
        if present:
            out.append("    arrays (videos where usable / where present; the settings of a variant):")
        for name, (usable, total, made, mixed) in present.items():
            note = f"  {made}" if made and not mixed else ""
            out.append(f"      {name:22s} {usable}/{total}{note}")
            if mixed:   # readers refuse it: say so, and what the groups hold
                out.append(f"        MIXED: made {len(mixed)} ways across the videos; train, predict and export refuse "
                           f"it until one `features` run makes it alike on all (with the flags you want):")
                out += [f"          {line}" for line in mixed]
        out += refused_label_lines(cache, ds_dir.name, refused)
        out += untracked_lines(cache, ds_dir.name)
        for _, row in done.iterrows():
            if isinstance(row.get("note"), str) and row.get("note"):   # indexes made before notes have none
                out.append(f"    note {row.video}: {row.note}")
            if isinstance(row.get("error"), str) and row.get("error"):   # a failed update or rebuild, damaged arrays
                out.append(f"    kept {row.video}: its last `features` run reported an error ({row.error}); its "
                           "arrays stay as they were made, and readers use those still usable")
        for _, row in failed.iterrows():
            if row.video not in partial:
                out.append(f"    failed {row.video}: {row.error}")
        for video, frames in partial.items():
            out.append(f"    partial {video}: {frames} frames saved (the next `features` run resumes there, "
                       "or starts it over if its settings changed)")
    return out or ["  (empty)"]


def _lock_lines(cache: Path, dataset: str) -> list[str]:
    """The `features` run holding the dataset's lock, or the one that left it when it was killed (what to rerun)."""
    from pipeline import lock

    holder = lock.read_lock(lock.lock_path(cache, dataset))
    if holder is None:
        return []
    if lock.is_stale(holder):
        return [f"    lock left by a `features` run that was killed ({lock.describe(holder)}): the next run takes it "
                "over and finishes what it left; rerun that command"]
    return [f"    a `features` run is at work on it now ({lock.describe(holder)}): what follows may change"]


def arrays_present(cache: Path, dataset: str,
                   refused: dict[str, str] | None = None) -> dict[str, tuple[int, int, str, list[str]]]:
    """Per kind and variant held in a dataset's groups ("dphase", "dphase@paper"): (videos where it is usable,
    videos where it is present, its recorded motion settings, and, where the groups hold it under more than one
    fingerprint, one line per fingerprint: the videos and settings of each). Read from the groups, not the index.
    ``refused``: {video: why} of the videos whose labels readers refuse (refused_labels), not counted usable.

    A variant replaced on some videos only (a `features` run killed mid-way, a flag given on a subset) is mixed:
    every reader refuses it (train, predict, export), so `info` says it, where it showed the first video's settings."""
    from pipeline import arrays, store
    from pipeline.uniform import PER_VIDEO

    counts: dict[str, list] = {}
    videos = store.dataset_dir(cache, dataset) / "videos"
    for d in sorted(videos.iterdir()) if videos.is_dir() else []:
        if store.group_status(cache, dataset, d.name) != "done":
            continue
        g = store.open_video(cache, dataset, d.name)
        bad = store.unusable_arrays(g)
        made = dict(g.attrs.get("made_with", {}))
        fps = dict(g.attrs.get("fingerprints") or {})
        by_input: dict[str, list[str]] = {}
        for name in set(g.array_keys()) | set(bad):
            try:
                kind = arrays.kind_of(name)
            except KeyError:
                continue
            variant = arrays.split_name(name)[1]
            by_input.setdefault(kind.name + (f"@{variant}" if variant else ""), []).append(name)
        for key, names in by_input.items():
            names.sort()
            c = counts.setdefault(key, [0, 0, {}])
            c[1] += 1
            # labels whose files changed since are refused by every reader, though the array itself is whole
            usable = not any(n in bad for n in names) and not (key == "labels" and d.name in (refused or {}))
            c[0] += usable
            motion = (made.get(names[0]) or {}).get("motion")
            settings = ", ".join(f"{k}={v}" for k, v in sorted(motion.items())) if motion else ""
            if usable:   # a stale or damaged array has no settings of its own to count
                c[2].setdefault(tuple(fps.get(n) for n in names), [settings, []])[1].append(d.name)
    order = list(arrays.KINDS)
    out = {}
    for key, (usable, total, by_fp) in sorted(counts.items(), key=lambda kv: (order.index(kv[0].split("@")[0]), kv[0])):
        ways = sorted(by_fp.items(), key=lambda kv: -len(kv[1][1]))
        if key in PER_VIDEO:   # a fingerprint per video by design (its own label files): not mixed, nobody refuses it
            out[key] = (usable, total, "per video (each from its own label files)" if len(ways) > 1 else "", [])
            continue
        mixed = [] if len(ways) < 2 else [
            f"{fp[0]}: {counted(len(vids), 'video')} ({', '.join(vids[:3])}{' ...' if len(vids) > 3 else ''})"
            + (f", {made}" if made else "") for fp, (made, vids) in ways]
        out[key] = (usable, total, ways[0][1][0] if ways else "", mixed)
    return out


def label_root_lines(cache: Path, dataset: str) -> list[str]:
    """Which root's files readers compare the cached labels with (pipeline/label_files.py), where a run recorded one."""
    from pipeline import label_files

    if not (cache / dataset / label_files.RECORD).is_file():
        return []
    root, how = label_files.current_root(cache, dataset)
    if root is None:
        return [f"    label files: not compared, no root of the dataset is found here (looked at {how})"]
    return [f"    label files compared with those under {root} ({how})"]


def untracked_lines(cache: Path, dataset: str) -> list[str]:
    """What `info` says of a dataset's arrays made before chunk tracking (pipeline/untracked.py), if it has any."""
    from pipeline import untracked

    unmarked, absent = untracked.count(cache, dataset)
    if not unmarked:
        return []
    whole = unmarked - sum(absent.values())
    out = [f"    {unmarked} arrays made before chunk tracking, unmarked: a lost chunk file reads as fill values"
           + (f"; the next `features` run marks the {whole} with every chunk file present" if whole else "")]
    if absent:
        from pipeline import store

        redo = store.repair_hint(cache, dataset, store.rebuild_names(cache, dataset), first=["--force"])
        videos = ", ".join(list(absent)[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        out.append(f"    {sum(absent.values())} of them have absent chunk files (videos {videos}), read as fill values: "
                   "right if Zarr skipped all-fill chunks (no face), but a lost file reads the same; to be sure, run "
                   f"{redo} (--force: every video is extracted again)")
    return out


def face_sources(cache: Path, dataset: str) -> dict[str, int]:
    """Where the done groups' faces came from ("video", "cropped_aligned from DIR", "openface from DIR") -> videos.

    Read from the groups (attrs face_source); groups made before it was recorded came from the video path.
    """
    from pipeline import store

    counts: dict[str, int] = {}
    videos = store.dataset_dir(cache, dataset) / "videos"
    for d in sorted(videos.iterdir()) if videos.is_dir() else []:
        if store.group_status(cache, dataset, d.name) != "done":
            continue
        src = dict(store.open_video(cache, dataset, d.name).attrs.get("face_source") or {"faces": "video"})
        what = src.get("faces", "video")
        if src.get("path"):
            what += f" from {Path(src['path']).parent}"
        counts[what] = counts.get(what, 0) + 1
    return counts


def lost_group_lines(cache: Path, dataset: str, done: list[str], partial: dict[str, int]) -> list[str]:
    """The videos the index counts done whose group is gone (deleted by hand, a copy that missed it, a killed
    `--force` run of a mimamo that removed every group first) or not done, and not listed as partial: train
    refuses them and predict reports them failed, so `info` says them where its count of the done would otherwise
    include them without a word."""
    from pipeline import store, unindexed

    lost = [v for v in done if v not in partial and store.group_status(cache, dataset, v) != "done"]
    if not lost:
        return []
    hint = store.repair_hint(cache, dataset, store.rebuild_names(cache, dataset))
    it, has = ("it", "has") if len(lost) == 1 else ("them", "have")
    return [f"    {counted(len(lost), 'video')} of the done {has} no complete group in the cache "
            f"({unindexed.listing(lost)}): deleted by hand, copied without {it}, or removed by a killed `features --force` "
            f"run of an older mimamo? train refuses {it} (--skip-unusable leaves {it} out) and predict "
            f"reports {it} failed; run {hint} to extract {it} again"]


def refused_labels(cache: Path, dataset: str) -> dict[str, str]:
    """{video: why} of the done groups whose cached labels every reader (train, predict, export, inspect) refuses
    now: their label files changed or are gone, or labels for an unlabelled entry were released since
    (store.changed_labels, compared with the dataset's root as readers find it)."""
    from pipeline import store

    out = {}
    videos = store.dataset_dir(cache, dataset) / "videos"
    for d in sorted(videos.iterdir()) if videos.is_dir() else []:
        if store.group_status(cache, dataset, d.name) != "done":
            continue
        why = store.changed_labels(store.open_video(cache, dataset, d.name).attrs, cache, dataset, d.name)
        if why:
            out[d.name] = why
    return out


def refused_label_lines(cache: Path, dataset: str, refused: dict[str, str]) -> list[str]:
    """`info`'s lines for the videos of refused_labels: how many, why (a few), and the command that reads them."""
    from pipeline import store

    if not refused:
        return []
    names = sorted(refused)
    shown = "; ".join(f"{v}: {refused[v]}" for v in names[:3]) + (f"; and {len(names) - 3} more" if len(names) > 3
                                                                   else "")
    return [f"    labels of {counted(len(names), 'video')} refused by train, predict, export and inspect until "
            f"`features` reads them again (nothing else is extracted): {shown}; run "
            f"{store.repair_hint(cache, dataset, ['labels'])}"]
