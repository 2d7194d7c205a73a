"""What a dataset's listing is made of: the dataset (its manifest entry, its root resolved) and one entry per video
to process, or one that fails alone with a message naming the file and line. The listers (pipeline/affwild_listing.py,
pipeline/omg_listing.py, pipeline/manifest.py) make them; the stage graph, extraction and settings read them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from features.errors import BadInputError
from pipeline.ids import stand_in

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")


@dataclass
class Dataset:
    """One dataset of the manifest, with its root resolved."""

    name: str
    layout: str
    root: Path
    fps: float | None
    options: dict = field(default_factory=dict)
    origin: str = ""   # where the root came from (resolve_root): --root, $VARIABLE or default


@dataclass
class VideoEntry:
    """One video to process: its cache id, file, split and where its labels come from.

    `side` is the person it follows: the largest face, or in Aff-Wild2's two-person videos the left or the right
    person (two entries read one video file; each is its own cache group). `problem` marks an entry that cannot be
    processed (a bad id, a missing video file): it fails alone, with this message, and the others go on.
    """

    video: str
    path: Path | None                                  # None: no video file (faces from organiser crops)
    split: str
    label_files: dict = field(default_factory=dict)   # per-frame: {"arousal": path, "valence": path} or {"both": path}
    video_labels: dict | None = None                   # video level (OMG): {"arousal": a, "valence": v}
    label_table: Path | None = None                    # video level: the CSV they were read from
    side: str = "largest"                              # largest | left | right (features.face_side)
    problem: str | None = None                         # why it fails (names the file and line)
    fps: float | None = None                           # the dataset's frame rate, for entries without a video file
    # whether it was named as labelled (an annotation file, a labelled CSV's line), for one that fails before its
    # labels are read: a failed labelled entry must stop training, an unlabelled one not (None: from the above)
    labelled: bool | None = None
    # where an unlabelled entry's labels would be if they were released (its annotation files, or the labelled CSV of
    # its split): recorded in its group, so readers say when one appears instead of holding it as unlabelled
    labels_absent: tuple = ()
    # where it was named, for messages about the entry itself (a repeated id, a test-list name with nothing on disk):
    # (the list or CSV file, its line), (the annotation file, None); None: its video file says it
    named_in: tuple | None = None
    # the dataset's root and where it came from (Dataset.origin): label files are recorded relative to it, so readers
    # compare them with the files of the root as it is now, a copy's included (pipeline/label_files.py)
    root: Path | None = None
    root_from: str = ""

    def is_labelled(self) -> bool:
        """Whether it came with labels (the index's `labelled`, also for an entry that failed before it had a
        group): as named (``labelled``), else from its label sources."""
        if self.labelled is not None:
            return bool(self.labelled)
        return bool(self.label_files) or self.video_labels is not None or self.label_table is not None


def failed_entry(path: Path, problem: str, hint: str, split: str = "", lineno: int | None = None,
                 labelled: bool = False) -> VideoEntry:
    """An entry that fails alone with a message naming the file (and line); its id is a safe stand-in.
    ``labelled``: it was named as a labelled video (its failure then stops training: the index's `labelled`)."""
    where = f"line {lineno}: " if lineno is not None else ""
    return VideoEntry(stand_in(path.name, lineno), None, split, labelled=labelled,
                      problem=str(BadInputError(path, where + problem, hint)))


def videos_in(folder: Path) -> list[Path]:
    """The video files under a folder (any depth), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())
