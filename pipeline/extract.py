"""One video's work: plan what it needs ("already done?"), then one loop that builds the stale arrays.

`plan` is the one place that decides whether a video is done. It compares the fingerprints in the video's group
with those the run wants (pipeline.settings). A full extraction is the case where every array is stale and the
video is needed; an update recomputes only the stale arrays, from the cached face48/face224 where that suffices.

`build` is the one loop for both: blocks of frames come from the video (decode, track, align) or from the group,
each stale array is computed from its source (pipeline.arrays: video, face48, face224) and appended. Where it
writes follows the integrity rules (pipeline/store.py): a new video is written in place with status=done set last;
anything that replaces a done group's arrays is built beside it and swapped in when complete, so a failed or
killed update leaves the old arrays usable. This is what a Dask worker runs for each video; memory is bounded by
the decode chunk plus one cache chunk, whatever the video's length.
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from features.errors import BadInputError
from pipeline import arrays, compute, face_transforms, faces, resume, settings, sources, store, untracked
from pipeline.manifest import VideoEntry, fit_labels, load_labels
from pipeline.settings import Settings, encoder_fingerprint, fingerprints

__all__ = ["Plan", "Settings", "build", "encoder_fingerprint", "fingerprints", "plan", "process_video"]

FACE_ARRAYS = tuple(arrays.KINDS["face"].parts)


# ---------------------------------------------------------------- planning ("already done?")


@dataclass
class Plan:
    """What a video needs: 'skip', 'full' (every array, from the video), 'update' (some arrays) or 'conflict'."""

    action: str
    want: dict[str, str] = field(default_factory=dict)    # the arrays to build -> their fingerprints
    needs_video: bool = False                              # an update that cannot be done from face48/face224
    beside: bool = False                                   # a done group exists: build beside it, then swap
    motion: dict = field(default_factory=dict)             # motion variant -> MotionConfig overrides, for `want`
    reason: str = ""
    resume: dict | None = None      # a full build: the progress record of the partial group it goes on from
    adopt: dict = field(default_factory=dict)   # attrs recording the content identity of a legacy-matched source
    track: list[str] = field(default_factory=list)   # arrays made before chunk tracking, every chunk file present
    hint: str = ""                                   # a conflict's own repair, where --replace-variant is not it
    flip_of: dict = field(default_factory=dict)      # mirrored array -> the fingerprint of its clean one (made_with)
    forced_by: str | None = None                     # a `--force` rebuild: its run's token, recorded in the group

    @property
    def arrays(self) -> list[str]:
        """The arrays to (re)compute."""
        return list(self.want)


def plan(cache: Path, dataset: str, entry: VideoEntry, want: dict[str, str], s: Settings,
         replace_variant: bool = False, force: str | None = None) -> Plan:
    """Compare a video's group with the fingerprints it should have. The only place that decides 'done'.

    A full build goes on from an interrupted one's last complete block when that was made under the same settings
    (pipeline/resume.py): a partial group in place, or a partial rebuild beside a done group. ``force``, the token
    of a `features --force` run: a done group is rebuilt beside itself, as for a changed source, so it stays whole
    and read until its rebuild is complete (a run killed or failing part-way loses nothing), unless that run rebuilt
    it already (the group records the token: a task Dask runs again after its worker left is a skip).
    """
    p = _plan(cache, dataset, entry, want, s, replace_variant, force)
    # what each mirrored array is made beside, recorded in its made_with: `train --augment flip` checks it is the
    # clean array it reads (train/augment.py)
    p.flip_of = {n: fp for n in p.want if (c := unflipped(n)) is not None and (fp := p.want.get(c, want.get(c)))}
    if p.action == "full" and p.beside and resume.rebuild_dir(cache, dataset, entry.video).is_dir():
        rec, why = resume.resumable(resume.rebuild_dir(cache, dataset, entry.video),
                                      resume.identity(p.want, p.motion, entry, s), entry.path)
        p.resume = rec
        p.reason += f"; resumes at frame {rec['frames']}" if rec else f"; its partial rebuild started over: {why}"
    return p


def _plan(cache: Path, dataset: str, entry: VideoEntry, want: dict[str, str], s: Settings,
          replace_variant: bool = False, force: str | None = None) -> Plan:
    motion = settings.motion_by_variant(s)
    status = store.group_status(cache, dataset, entry.video)
    if status is None:
        return Plan("full", dict(want), True, motion=motion, reason="new")
    if status != "done":   # an interrupted extraction: resumed where it stopped if made under the same settings
        p = Plan("full", dict(want), True, motion=motion)
        rec, why = resume.resumable(store.video_dir(cache, dataset, entry.video),
                                      resume.identity(p.want, p.motion, entry, s), entry.path)
        p.resume, p.reason = rec, (f"resumes at frame {rec['frames']} (partial group)" if rec else
                                   f"partial group ({status}) started over: {why}")
        return p
    g = store.open_video(cache, dataset, entry.video)
    if force and g.attrs.get("forced_by") != force:
        return replace(_rebuild(g, want, s, motion, "--force"), forced_by=force)
    have = dict(g.attrs.get("fingerprints", {}))
    bad = store.unusable_arrays(g)
    src = sources.recorded(g.attrs, "source_")
    if entry.path is not None and entry.path.is_file() and src and not sources.matches(src, entry.path):
        return _rebuild(g, want, s, motion, "source video changed")
    origin = faces.origin(s, entry)
    why = faces.origin_change(g.attrs.get("face_source"), origin)
    if why:
        return _rebuild(g, want, s, motion, why)
    p = _plan_done(g, have, bad, want, s, motion, replace_variant)
    if p.action in ("skip", "update"):   # the group stays: record its sources' content identities if it lacks them,
        p.adopt = adopt_content(g.attrs, entry.path, origin)   # and mark its old arrays that wrote every chunk
        if "labels" not in p.want and "labels" in want:   # where its current labels were read (store.changed_labels)
            record = store.label_record(entry)
            if record != g.attrs.get("label_files"):
                p.adopt["label_files"] = record
            if (absent := store.absent_labels(entry)) != list(g.attrs.get("labels_absent") or []):
                p.adopt["labels_absent"] = absent
        if g.attrs.get(store.UNLISTED):   # listed again (pipeline/unlisted.py): readers may use it again
            p.adopt[store.UNLISTED] = None
            p.reason += "; back in the dataset"
        if g.attrs.get("split") != entry.split:   # a video moved between splits keeps its arrays, not its old split:
            p.adopt["split"] = entry.split         # readers hold out what the dataset now says (index rows follow)
            p.reason += f"; split {g.attrs.get('split')!r} -> {entry.split!r}, as the dataset now says"
        p.track = [n for n, whole in untracked.untracked_arrays(g, skip={*p.want, *bad}).items() if whole]
    return p


def _plan_done(g, have: dict, bad: dict, want: dict, s: Settings, motion: dict, replace_variant: bool) -> Plan:
    """A done group made from the same sources: skip, update its stale arrays, or a motion-settings conflict."""
    if any(have.get(n) != want[n] or n in bad for n in FACE_ARRAYS):
        why = "damaged faces" if any(have.get(n) == "damaged" for n in FACE_ARRAYS) else \
            "face fingerprint changed (settings, landmark model or code version)"
        return _rebuild(g, want, s, motion, why)
    conflicts, why = motion_conflicts(g, bad, want, motion)
    if conflicts and not replace_variant:
        return Plan("conflict", reason=why)
    stale = {n: fp for n, fp in want.items() if have.get(n) != fp or n in bad}
    left = lone_mirrors(g, have, bad, stale, want)
    if left:
        clean, mirror = left[0]
        return Plan("conflict", reason=f"{clean} would be remade under other settings or code ({have[clean]} -> "
                    f"{stale[clean]}) while the group's mirrored {mirror} stays as it was made"
                    + (f" (and {len(left) - 1} more such pairs)" if len(left) > 1 else "")
                    + ": `train --augment flip` would read the two made otherwise",
                    hint="add --extras flip, which remakes the mirrored arrays alike (from the cached faces where "
                         "they suffice)")
    if not stale:
        return Plan("skip", reason="done")
    face224_ok = have.get("face224") == want["face48"] and "face224" not in bad
    needs_video = any(arrays.source_of(n) == "video" or (arrays.source_of(n) == "face224" and not face224_ok)
                      for n in stale)
    return Plan("update", stale, needs_video, beside=True, motion=motion, reason="recompute " + ",".join(stale))


def motion_conflicts(g, bad: dict, names, motion: dict) -> tuple[list[str], str]:
    """The arrays among `names` that a done group holds made with other motion settings than `motion` (variant ->
    overrides) asks, and a reason naming them with both settings. Such an array is replaced only when the user says
    so (--replace-variant): a variant's name stands for its settings, and other work may have been made from it."""
    made = dict(g.attrs.get("made_with", {}))
    conflicts = [n for n in names if arrays.kind_of(n).params == "motion" and n in made and n not in bad
                 and made[n].get("motion", {}) != motion.get(arrays.split_name(n)[1], {})]
    if not conflicts:
        return [], ""
    asked = motion.get(arrays.split_name(conflicts[0])[1], {})
    return conflicts, (f"{', '.join(conflicts)} made with motion settings {made[conflicts[0]].get('motion')}, "
                       f"this run asks {asked}")


def unflipped(name: str) -> str | None:
    """The clean array of a mirrored one ("dphase_s0@paper+flip" -> "dphase_s0@paper"); None for any other."""
    base, variant = arrays.split_name(name)
    if variant is None or not face_transforms.split_variant(variant)[1].flip:
        return None
    return arrays.array_name(base, face_transforms.without_flip(variant))


def lone_mirrors(g, have: dict, bad: dict, stale: dict, want: dict) -> list[tuple[str, str]]:
    """(clean, mirrored) pairs where an update remakes the clean array under another fingerprint (settings, weights,
    code) and leaves the mirrored array the group holds, made under the old ones. A clean array only redone because
    it was damaged or stale under its own fingerprint keeps its partner's settings; so does a partner recorded as made
    beside the fingerprint the clean array gets now."""
    made = dict(g.attrs.get("made_with", {}))
    out = []
    for clean, fp in stale.items():
        if not arrays.kind_of(clean).variants or unflipped(clean) is not None:
            continue
        base, variant = arrays.split_name(clean)
        mirror = arrays.array_name(base, face_transforms.with_flip(variant))
        if (mirror in have and mirror not in want and mirror not in bad and clean not in bad and have.get(clean)
                and (made.get(mirror) or {}).get("clean_fingerprint") != fp):
            out.append((clean, mirror))
    return out


def _rebuild(g, want: dict, s: Settings, motion: dict, why: str) -> Plan:
    """A done group rebuilt from its video: the wanted arrays plus the motion variants it held (new faces)."""
    made = dict(g.attrs.get("made_with", {}))
    keep, dropped = {}, []
    # mirrored variants after the others: one kept beside a clean variant this run asks for takes its settings
    for name in sorted(g.array_keys(), key=lambda n: unflipped(n) is not None):
        if name in want or arrays.kind_of(name).params not in ("motion", "flow"):
            if name not in want:
                dropped.append(name)
            continue
        variant = arrays.split_name(name)[1]
        overrides = dict((made.get(name) or {}).get("motion", {}))
        if variant is not None and name not in made:   # a variant whose settings were never recorded
            dropped.append(name)
            continue
        clean = unflipped(name)
        motion.setdefault(variant, motion.get(arrays.split_name(clean)[1], overrides) if clean else overrides)
        keep[name] = settings.array_fingerprint(name, want["face48"], motion[variant])
    note = f"; dropped {','.join(sorted(dropped))} (not asked for)" if dropped else ""
    return Plan("full", {**want, **keep}, True, beside=True, motion=motion, reason=f"{why}: rebuilt{note}")


def source_identity(path: Path) -> dict:
    """A video file's identity by contents (pipeline/sources.py says why not its mtime): a changed file is extracted
    again, a copy (new mtime, same bytes) is not."""
    return sources.video_identity(path)


def adopt_content(attrs, video: Path | None, origin: dict) -> dict:
    """The attrs that record, beside a group's legacy identities (`[size, mtime]`, which plan found still matching),
    the content identities of the same files, so a later copy of the dataset (new mtimes) matches too. Added, never
    replacing what was recorded: the legacy value stays what training runs' identities hold (train/videos.py).
    `origin`: the face source as this run finds it (faces.origin)."""
    out = {}
    if video is not None and video.is_file() and sources.is_legacy(sources.recorded(attrs, "source_")):
        out["source_content"] = source_identity(video)
    face = dict(attrs.get("face_source") or {})
    if sources.is_legacy(sources.recorded(face)) and origin.get("identity") is not None:
        out["face_source"] = {**face, "content": origin["identity"]}
    return out


def record_adopted(cache: Path, dataset: str, video: str, adopt: dict, track: list[str] = ()) -> None:
    """Write what adopt_content found into a done group, and mark the arrays of Plan.track as writing every chunk
    (pipeline/untracked.py). The caller holds the dataset's features lock."""
    g = store.open_video(cache, dataset, video, mode="r+")
    if adopt:
        g.attrs.update(adopt)
    untracked.mark(g, track)


# ---------------------------------------------------------------- the one loop


def build(cache: Path, dataset: str, entry: VideoEntry, s: Settings, p: Plan, report) -> dict:
    """Build the plan's arrays block by block, then make them visible as the integrity rules say."""
    names = p.arrays
    full = p.action == "full"
    if full:
        labels = load_labels(entry)   # read first: a malformed label file fails before any decoding
        attrs = _video_attrs(entry, s)
    else:
        labels = load_labels(entry) if "labels" in names else None
        attrs = {}
    # crops: the frame count comes first, from the video's container or the annotation file (the group's, if any)
    count = None
    before = None if full else store.open_video(cache, dataset, entry.video).attrs
    cached = (before or {}).get("frames_counted") or "the cached group has"   # how an update's frame count was found
    if s.faces == "cropped_aligned" and p.needs_video:
        have = None if full else int(before["n_frames"])
        count = (have, cached) if have else faces.frame_count(s, entry, labels)
        if labels is not None and "labels" in names:
            fit_labels(labels, count[0], next(iter(entry.label_files.values())), s.label_slack, count[1])
    staged = None
    if p.beside:   # a rebuild goes to a place of its own that a later attempt finds; an update to a fresh one
        staged = resume.rebuild_dir(cache, dataset, entry.video) if full else \
            store.staging_dir(cache, dataset, entry.video)
    w = store.VideoWriter(cache, dataset, entry.video, names, attrs, path=staged, resume=p.resume)
    try:
        notes: dict = {}
        try:
            n = _fill(cache, dataset, entry, s, p, w, report, notes, count[0] if count else None)
            # where n came from, for messages here and the notes of predict (train/predict_files.frames_counted)
            counted = count[1] if count else "the video decodes to" if p.needs_video else cached
            diffs = {}
            if "labels" in names:
                lab, diffs["label_frame_diff"] = _frame_labels(entry, labels, n, s.label_slack, counted)
        except BadInputError as e:   # labels or a CSV that do not fit a cut video: the video is at fault
            _unchanged(entry, p, s, attrs if full else before)   # unless it was replaced while it was read
            if notes.get("declared_frames"):
                raise cut_video(entry.path, notes["decoded_frames"], notes["declared_frames"], e) from None
            raise
        _unchanged(entry, p, s, attrs if full else before)
        if notes.get("declared_frames"):   # decoded short with nothing to contradict it: kept, and said (index note)
            diffs["declared_frames"] = int(notes["declared_frames"])
        if "crops_last_frame" in notes:   # a crop folder that stops well before the end is said too (index note)
            diffs["crops_last_frame"] = int(notes["crops_last_frame"])
        if "labels" in names:
            for lo in range(0, n, store.CHUNK_T):
                w.append("labels", lab[lo:lo + store.CHUNK_T])
        made = _made_with(s, p)
        if full:
            w.finish(p.want, {"n_frames": n, "made_with": made, "faces_frame_diff": notes.get("faces_frame_diff", 0),
                              "frames_counted": counted, **diffs, **({"forced_by": p.forced_by} if p.forced_by else {})})
            if staged is not None:
                store.swap_group(cache, dataset, entry.video, staged)
        else:
            w.finish(p.want, {"n_frames": n})   # checks the staged arrays are all complete
            old = store.open_video(cache, dataset, entry.video).attrs
            extra = {"made_with": {**dict(old.get("made_with", {})), **made}, **diffs}
            if "labels" in names:
                extra.update(video_labels=entry.video_labels, label_files=store.label_record(entry),
                             labels_absent=store.absent_labels(entry))
            store.swap_arrays(cache, dataset, entry.video, staged, p.want, extra)
    except Exception as err:
        if not keeps_saved_blocks(p, w, err):
            w.discard()   # a failed video leaves no partial group (unless another attempt writes it now)
        raise
    decoded = p.needs_video and s.faces != "cropped_aligned"   # organiser crops: nothing is decoded, crops are read
    start = int(p.resume["frames"]) if p.resume else 0
    return {"n_frames": n, "decoded": n - start if decoded else 0, "resumed_from": start,
            "from_crops": n - start if p.needs_video and not decoded else 0}


def keeps_saved_blocks(p: Plan, w: store.VideoWriter, err: Exception) -> bool:
    """Whether a failed extraction keeps the blocks it saved, for the next run to resume from.

    A failure that is not the video's (no space left on the cache's disk, a file system error, memory, CUDA) used
    to delete hours of saved blocks with the group, and the freed space hid why it failed. The video's own faults
    (BadInputError: labels, a cut or unreadable video) still leave nothing; an update's arrays are staged afresh
    each time, so there is nothing to resume there.
    """
    return p.action == "full" and w.saved and not isinstance(err, BadInputError)


def _fill(cache, dataset, entry, s, p: Plan, w: store.VideoWriter, report, notes: dict,
          n_frames: int | None = None) -> int:
    """Append every block's arrays; returns the number of frames."""
    names = set(p.arrays)
    comps = compute.computers(p.arrays, s, p.motion, entry.video)
    n = int(p.resume["frames"]) if p.resume else 0
    if p.needs_video:   # from the face source: the video, its OpenFace CSV, or the organiser crops (no video)
        state = resume.restore(w.group, p.resume, comps, s) if p.resume else None
        blocks = faces.face_blocks(entry, s, report, notes, n_frames, start=n, resume=state)
    else:
        sources = ["valid"] + sorted({arrays.source_of(nm) for nm in names} & {"face48", "face224"})
        blocks = compute.group_blocks(cache, dataset, entry.video, sources, report)
    ident = resume.identity(p.want, p.motion, entry, s) if p.action == "full" else None
    for block in blocks:
        for name in names & block.keys():   # face arrays straight from the video
            w.append(name, block[name])
        for comp in comps:
            for name, arr in comp(block).items():
                if name in names:   # an update may redo one part of a kind (dphase_s0 lost, dphase_s1 fine)
                    w.append(name, arr)
        n += len(block["valid"])
        if ident is not None and block.get("resume") is not None:   # every row so far is complete: a resume point
            w.commit(resume.record(n, ident, block["resume"], comps))
    if n == 0:
        raise BadInputError(entry.path or entry.video, "decoded no frames", "check the file")
    if p.action == "update":
        have = int(store.open_video(cache, dataset, entry.video).attrs["n_frames"])
        if n != have:
            raise BadInputError(entry.path, f"gave {n} frames, the cached group has {have}",
                                "the file changed: rerun with --force to extract it again")
    return n


def _unchanged(entry: VideoEntry, p: Plan, s: Settings, attrs) -> None:
    """The inputs this build read faces from must still be those whose identities the group records (sources): the
    video it decoded, and the organiser crops or OpenFace CSV it read."""
    if not p.needs_video:
        return
    hint = ("run the command again once nothing writes to it: it extracts the video anew, and what was cached before "
            "is kept until then")
    rec = sources.recorded(attrs or {}, "source_")
    if s.faces != "cropped_aligned" and entry.path is not None and rec:
        if why := sources.replaced_while_read(rec, entry.path):
            raise BadInputError(entry.path, why, hint.replace("to it", "to the file"))
    if changed := faces.changed_while_read((attrs or {}).get("face_source"), s, entry):
        raise BadInputError(changed[0], changed[1], hint)


def cut_video(path, decoded: int, declared: int, e: BadInputError) -> BadInputError:
    """The error for a video that decodes to fewer frames than its header declares, where its labels (or CSV) do not
    fit the frames decoded: the cut file is the likelier culprit, so it is named, not the label file."""
    return BadInputError(path, f"the video decodes to {decoded} frames, fewer than the {declared} its header "
                         f"declares: the file is cut or damaged, which is why "
                         + (f"{e.path}: {e.problem}" if e.path and e.path != str(path) else e.problem),
                         "re-copy or re-encode it; use --label-slack only if the header is known to be wrong")


def _made_with(s: Settings, p: Plan) -> dict:
    """made_with of the plan's arrays; a rebuilt motion variant keeps its own recorded settings."""
    made = settings.made_with(s, p.arrays)
    for name in p.arrays:
        if arrays.kind_of(name).params == "motion":
            variant = arrays.split_name(name)[1]
            made[name] = {"motion_variant": variant, "motion": dict(p.motion.get(variant, {}))}
        if name in p.flip_of:
            made[name]["clean_fingerprint"] = p.flip_of[name]
    return made


def _video_attrs(entry: VideoEntry, s: Settings) -> dict:
    from features.video import FALLBACK_FPS, probe

    common = {"split": entry.split, "video_labels": entry.video_labels, "settings": settings.as_attrs(s),
              "libraries": settings.libraries(), "faces": s.faces, "face_source": faces.origin(s, entry),
              "label_files": store.label_record(entry), "labels_absent": store.absent_labels(entry)}
    if s.faces == "cropped_aligned" and (entry.path is None or not entry.path.is_file()):
        # organiser crops without their video: the dataset's frame rate, no frame size
        folder = str(faces.crop_folder(s, entry))
        return {"fps": float(entry.fps or FALLBACK_FPS), "width": 0, "height": 0, "source": folder, **common}
    if entry.path is None:
        raise BadInputError(None, f"{entry.video}: no video file", "only --faces cropped_aligned works without it")
    info = probe(entry.path)
    return {"fps": info.fps, "width": info.width, "height": info.height, "source": str(entry.path),
            "source_size": entry.path.stat().st_size, "source_mtime": entry.path.stat().st_mtime,
            "source_identity": source_identity(entry.path), **common}


def _frame_labels(entry: VideoEntry, labels, n: int, slack: int = 0, counted: str = "the video decodes to"):
    """(labels [n, 2], label rows minus frames): the file's rows, one per frame within the slack; NaN if unlabelled."""
    import numpy as np

    if labels is None:
        return np.full((n, 2), np.nan, np.float32), 0
    return fit_labels(labels, n, next(iter(entry.label_files.values())), slack, counted)


def process_video(cache: str, dataset: str, entry: VideoEntry, s: Settings, report=None,
                  want: dict[str, str] | None = None, replace_variant: bool = False, force: str | None = None) -> dict:
    """Bring one video's group up to date; never raises for a bad video: the row says what failed.

    `want` (the arrays' fingerprints) is computed once by the client; without it, it is computed here. `force`: the
    token of the `--force` run that extracts it again (plan).
    """
    import torch

    from pipeline.allocator import keep_freed_memory

    torch.set_num_threads(max(1, s.threads))
    keep_freed_memory()  # workers are fresh processes: tune their allocator too (idempotent)
    report = report or (lambda k: None)
    cache = Path(cache)
    t0, c0 = time.perf_counter(), time.process_time()
    row = {"video": entry.video, "split": entry.split, "source": str(entry.path or ""), "error": None}
    try:
        if entry.problem:   # made by the lister (a bad id, a missing file): this entry fails alone
            raise BadInputError(None, entry.problem)
        want = want or fingerprints(s, entry)
        p = plan(cache, dataset, entry, want, s, replace_variant, force)
        row.update(action=p.action, reason=p.reason, rebuilt=p.action == "full" and p.beside)   # a done group's
        if p.action == "conflict":
            raise BadInputError(entry.path, p.reason, "use another --motion-variant name, or --replace-variant")
        out = build(cache, dataset, entry, s, p, report) if p.action != "skip" else {"decoded": 0}
        row.update(store.index_row(cache, dataset, entry.video), action=p.action, reason=p.reason,
                   decoded=out["decoded"], from_crops=out.get("from_crops", 0), resumed_from=out.get("resumed_from", 0))
    except Exception as e:  # per-video isolation: record, clean up, carry on with the others
        msg = str(e) if isinstance(e, BadInputError) else f"{entry.path}: {type(e).__name__}: {e}"
        msg += resume.saved_note(cache, dataset, entry.video)   # kept blocks (keeps_saved_blocks), said at once
        row.update(status="failed", error=msg, action="failed", decoded=0, n_frames=0,
                   labelled=entry.is_labelled())
    row["seconds"] = time.perf_counter() - t0
    row["cpu_seconds"] = time.process_time() - c0   # the worker's CPU time (one video at a time per worker)
    row["worker_pid"] = os.getpid()
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # the worker's peak so far
    return row
