"""Where an entry's faces come from (`features --faces`), and what a group records about it.

- `video` (default): decode, dlib detect and track, align from time-smoothed landmarks (pipeline.compute).
- `cropped_aligned`: Aff-Wild2's organiser crops, `<crops>/<entry>/<NNNNN>.jpg` (features.aligned_crops): no decoding
  and no detection. One row per frame of the video: the count comes from the video file's container (no decoding),
  or from the annotation file where the video is absent; frames without a crop are invalid, landmarks NaN.
- `openface`: landmarks and success flags from OpenFace 2 CSVs (features.openface) instead of dlib, then our own
  time-smoothed alignment on the decoded frames. `<dir>/<entry>.csv`; for a two-person entry without its own CSV,
  the video file's `<dir>/<video>.csv`. A CSV with one face per frame (FeatureExtraction) is that person's track; a
  two-person entry follows its side through a CSV with several faces per frame (FaceLandmarkVidMulti).

Two-person videos: each entry follows its own person (`VideoEntry.side`: the dlib tracker's and the OpenFace
reader's side selection; crop folders are per person already).

The source is part of the face fingerprint (pipeline.settings.face_fingerprint), so a cache never holds faces of two
sources under one fingerprint. What differs per entry (its side, the crop folder or CSV it read and that input's
identity) is recorded in the group (`attrs["face_source"]`) and compared by `extract.plan` on every run, as the video
file's own identity is: a changed input, or an entry that now follows another person, is rebuilt. It is not in the
fingerprint because a dataset's arrays carry one fingerprint across its videos (the trainer checks that).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from features.errors import BadInputError
from pipeline import sources, store
from pipeline.manifest import VideoEntry

FACE_SOURCES = ("video", "cropped_aligned", "openface")
# What the face fingerprint says about sides for the sources new with two-person entries: the rule, not a value
# (one value per entry would give a dataset's arrays several fingerprints).
SIDE_RULE = "per entry: the largest face, or the left/right person of a two-person video"


def crop_folders(s, entry: VideoEntry) -> list[Path]:
    """Where the organiser crops of one entry may be, in order: `<crops>/<entry>/` (two-person videos:
    `<video>_left/`, `<video>_right/`) for each crops folder (``s.faces_dir``, several joined by os.pathsep: ABAW5 on
    ships cropped_aligned/ and cropped_aligned_new_50_vids/)."""
    return [Path(d) / entry.video for d in s.faces_dir.split(os.pathsep)]


def crop_folder(s, entry: VideoEntry) -> Path:
    """The organiser crops of one entry: the first of ``crop_folders`` that is there (else the first)."""
    places = crop_folders(s, entry)
    return next((p for p in places if p.is_dir()), places[0])


def openface_csv(s, entry: VideoEntry) -> Path:
    """The OpenFace CSV of one entry: `<entry>.csv`, else (two-person entry) the video file's multi-face CSV."""
    own = Path(s.faces_dir) / f"{entry.video}.csv"
    if own.is_file() or entry.side == "largest" or entry.path is None:
        return own
    shared = Path(s.faces_dir) / f"{entry.path.stem}.csv"
    return shared if shared.is_file() else own


def source_missing(s, entry: VideoEntry) -> str | None:
    """What an entry's faces are made from that is not there now (its crop folder; else its video file, and with
    `--faces openface` its CSV), or None. `features --force` keeps a done group whose source is gone: removed, its
    arrays could not be made again."""
    if s.faces == "cropped_aligned":   # no video needed: the crops (frame count from the annotation file)
        places = crop_folders(s, entry)
        return None if any(p.is_dir() for p in places) else f"its folder of aligned faces {places[0]} is not found"
    if entry.path is None or not Path(entry.path).is_file():
        return f"its video file {entry.path} is not found"
    if s.faces == "openface" and not (csv := openface_csv(s, entry)).is_file():
        return f"its OpenFace CSV {csv} is not found"
    return None


def folder_identity(folder: Path) -> str | None:
    """A digest of a crop folder's numbered images (names and sizes; not mtimes, which a copy changes); None if absent.

    Costs one stat per crop (no image is read), so every run can compare it.
    """
    from features.aligned_crops import IMAGE_EXTS

    try:
        with os.scandir(folder) as it:
            items = sorted((e.name, e.stat().st_size) for e in it
                           if e.name.lower().endswith(IMAGE_EXTS) and e.name.split(".")[0].isdigit() and e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return None
    return store.fingerprint("crops", items)


def origin(s, entry: VideoEntry) -> dict:
    """What this entry's faces are made from under these settings (the group's attrs["face_source"])."""
    out = {"faces": s.faces, "side": entry.side}
    if s.faces == "cropped_aligned":
        folder = crop_folder(s, entry)
        out.update(path=str(folder), identity=folder_identity(folder))
    elif s.faces == "openface":   # its whole contents (pipeline/sources.py: a copy keeps them, a same-size edit not)
        csv = openface_csv(s, entry)
        out.update(path=str(csv), identity=sources.file_identity(csv) if csv.is_file() else None)
    return out


def origin_change(stored: dict | None, wanted: dict) -> str | None:
    """Why a done group's faces no longer match what the entry asks for (None: they do).

    Groups from before the face source was recorded were made by the video path following the largest face. An input
    that is absent now is not a change (the cached faces stay usable, as with a video file that was moved away).
    """
    stored = dict(stored or {"faces": "video", "side": "largest"})
    if stored.get("faces", "video") != wanted["faces"]:
        return f"face source changed ({stored.get('faces', 'video')} -> {wanted['faces']})"
    if stored.get("side", "largest") != wanted["side"]:
        return f"this entry follows the {wanted['side']} person (its faces followed the {stored.get('side')} one)"
    # the identity origin() took now; a legacy `[size, mtime]` (an OpenFace CSV before contents were hashed) is
    # honoured as it was made, against the file this run reads
    if wanted.get("identity") is not None and not sources.matches(sources.recorded(stored), Path(wanted["path"]),
                                                                  identify=lambda _path: wanted["identity"]):
        return f"{wanted['path']} changed"
    return None


def changed_while_read(stored: dict | None, s, entry: VideoEntry) -> tuple[str, str] | None:
    """(the input, why) where the crop folder or OpenFace CSV an extraction read its faces from no longer holds what
    ``stored`` (the group's face_source as recorded when the extraction began) identified; None where it does.

    The video file's own check (sources.replaced_while_read), for the face inputs: crops copied into the folder or a
    CSV rewritten while the faces are read give the group the new input's faces under the old one's identity, which a
    later run with the old input put back would find matching, and keep. Cheap: a crop folder's identity is one stat
    per crop, and a CSV is hashed again only where its stat changed (sources._MEMO)."""
    stored = dict(stored or {})
    if s.faces not in ("cropped_aligned", "openface") or stored.get("faces") != s.faces:
        return None
    rec = sources.recorded(stored)
    if rec is None:   # nothing was there to identify when it began: the reader said so, or found it since
        return None
    now = origin(s, entry)
    what = "crop folder" if s.faces == "cropped_aligned" else "file"
    if now["identity"] is None:
        return now["path"], f"the {what} was removed or renamed while its faces were read"
    if not sources.matches(rec, Path(now["path"]), identify=lambda _path: now["identity"]):
        return now["path"], (f"the {what} changed while its faces were read (its contents are not those it had when "
                             "the extraction began): the faces read may come from the old one, the new one or both")
    return None


def frame_count(s, entry: VideoEntry, labels) -> tuple[int, str]:
    """(frames, how counted) of an entry whose faces are crops: the video's container, else its annotation file."""
    from features.video import count_frames

    if entry.path is not None and entry.path.is_file():
        return count_frames(entry.path)
    if labels is not None:
        return len(labels), "the annotation file has"
    # an entry named by a list (the test set's): the list's line is where the name to check is
    src, line = entry.named_in if entry.named_in and entry.named_in[1] is not None else (None, None)
    where = f"line {line}: {entry.video!r}: " if line is not None else ""
    places = crop_folders(s, entry)
    folder = next((p for p in places if p.is_dir()), None)
    if folder is None:
        raise BadInputError(src or places[0], f"{where}no video file, no annotation file and no crop folder (looked "
                            f"in {', '.join(map(str, places))}): nothing on disk has this name",
                            "check the name against the videos and crop folders (a typo, or an entry of another "
                            "release?); ABAW5 on ships two crop folders: give each with --crops-dir")
    raise BadInputError(src or folder, f"{where}no video file and no annotation file to count its frames (its crop "
                        f"folder {folder} cannot: frames after the last face leave no file)",
                        "put the video beside the others, or give its annotation file")


def face_blocks(entry: VideoEntry, s, report, notes: dict, n_frames: int | None = None, start: int = 0,
                resume: dict | None = None) -> Iterator[dict]:
    """Blocks of valid, landmarks, face48, face224 (--chunk-frames frames) from the entry's face source, from frame
    `start` on (a resumed video: `resume` is the state there, pipeline/resume.py).

    `notes["faces_frame_diff"]` is set at the end: crops numbered past the last frame, or CSV frames minus video
    frames (both accepted only within --label-slack); `notes["crops_last_frame"]`: the last crop's frame number.
    """
    from pipeline import compute

    if s.faces == "cropped_aligned":
        yield from crop_blocks(entry, s, report, notes, n_frames, start)
        return
    tracker = None
    if s.faces == "openface":
        from features.openface import OpenFaceLandmarks

        csv = openface_csv(s, entry)
        # one face per frame: that person's own track, taken as it is; several (FaceLandmarkVidMulti): our side's
        side = entry.side if entry.side != "largest" and several_faces(csv) else "largest"
        tracker = OpenFaceLandmarks(csv, slack=s.label_slack, side=side)
    yield from compute.video_blocks(entry, s, report, tracker=tracker, notes=notes, start=start, resume=resume)


def several_faces(csv: Path) -> bool:
    """Whether an OpenFace CSV has several rows for some frame (a multi-face CSV); False if it cannot be read here.

    A per-person CSV must not be followed by side: with nobody ever beside our person, the side rule would refuse
    them whenever they stand on the other half of the frame. Reads only the `frame` field of each line.
    """
    try:
        with csv.open(encoding="utf-8-sig") as fh:
            header = [h.strip() for h in fh.readline().split(",")]
            k = header.index("frame")
            last = None
            for line in fh:
                fields = line.split(",", k + 1)
                if len(fields) <= k:
                    continue
                frame = fields[k].strip()
                if frame and frame == last:
                    return True
                last = frame
    except (OSError, ValueError):
        return False   # the reader says what is wrong with it
    return False


def crop_blocks(entry: VideoEntry, s, report, notes: dict, n_frames: int, start: int = 0) -> Iterator[dict]:
    """The organiser crops of one entry in --chunk-frames blocks: no decoding, no detection, nothing carried from
    one block to the next (so any block's end is a resume point with an empty state)."""
    from features.aligned_crops import iter_crop_folder, scan_crop_folder
    from pipeline.compute import chunk_frames

    places = crop_folders(s, entry)
    folder = next((p for p in places if p.is_dir()), None)
    if folder is None:   # fails this video, naming every place looked in
        raise BadInputError(places[0], "folder of aligned faces not found" + (
            f" here nor in {', '.join(map(str, places[1:]))}" if len(places) > 1 else ""),
            "the crops of ABAW5 on come in two folders (cropped_aligned, cropped_aligned_new_50_vids): give each "
            "with --crops-dir, or list them in the manifest's crops:")
    crops = scan_crop_folder(folder)
    notes["faces_frame_diff"] = max(0, crops.last_frame - n_frames)
    notes["crops_last_frame"] = crops.last_frame   # a folder cut short is said (store.video_note), not only trailing
    for chunk in iter_crop_folder(crops, n_frames, chunk_size=chunk_frames(s), slack=s.label_slack, start=start):
        yield {"valid": chunk.valid, "landmarks": chunk.landmarks, "face48": chunk.face48, "face224": chunk.face224,
               "resume": {}}
        report(len(chunk))
