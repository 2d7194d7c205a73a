"""Cached videos that their dataset no longer lists: marked, read by no reader, deleted only when asked (--prune).

A video taken out of a dataset (a corrupt file removed, an annotation withdrawn, a video dropped from a release)
kept its group and its index row: `features` plans only the videos the dataset lists, so it never looked at the
others again, and `train` went on training and scoring on them (or, for one whose extraction had failed, refused
forever, naming a video the dataset no longer has). A `features` run over a whole dataset now compares the cache
with the listing, under the dataset's lock:

- a group the dataset does not list is marked (attrs[store.UNLISTED], saying by which run). Readers refuse it as
  unusable (store.check_arrays; `--skip-unusable` leaves it out and lists it in metrics.json) and `info` notes it.
  Its arrays are kept, in case the removal was a mistake: back in the listing, the next run unmarks it and
  recomputes nothing (extract._plan).
- the index row of a video not listed whose group is not done (a failure record) is dropped: no reader could use
  it, and it made `train` refuse the dataset. A partial group stays on disk, to be resumed if the video comes back.
- with ``prune``, unlisted groups (done or partial, and partial rebuilds) are deleted, and their rows with them.

Runs over video files (`features a.mp4 ...`, the dataset 'videos') add to the cache and compare nothing.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field

from pipeline import resume, store
from pipeline.wording import counted


@dataclass
class Reconciled:
    """What a run did with the cached videos its dataset does not list."""

    marked: list[str] = field(default_factory=list)    # done groups marked now or before (kept)
    pruned: list[str] = field(default_factory=list)    # groups deleted (--prune)
    dropped: list[str] = field(default_factory=list)   # index rows without a group (failure records), removed

    def lines(self, cache, dataset: str) -> list[str]:
        """What the run says of them."""
        out = []
        gone = f"no longer in dataset {dataset!r}"
        if self.marked:
            out.append(f"{counted(len(self.marked), 'cached video')} {gone}: {_names(self.marked)}. Kept in "
                       "the cache in case that is a mistake, but no reader uses them (train refuses them; "
                       "--skip-unusable leaves them out); "
                       f"`{store.repair_command(cache, dataset, extra=['--prune'])}` deletes them")
        if self.pruned:
            out.append(f"deleted {counted(len(self.pruned), 'cached video')} {gone} (--prune): {_names(self.pruned)}")
        if self.dropped:
            out.append(f"dropped the failure records of {counted(len(self.dropped), 'cached video')} {gone}: "
                       f"{_names(self.dropped)}")
        return out


def _names(videos: list[str], limit: int = 8) -> str:
    return ", ".join(videos[:limit]) + (f" and {len(videos) - limit} more" if len(videos) > limit else "")


def _rows(cache, dataset: str) -> set[str]:
    """The videos of a dataset's index rows; none when it cannot be read (the run rebuilds it from the groups)."""
    try:
        idx = store.read_index(cache, dataset)
    except store.UnreadableIndex:
        return set()
    return set(idx.video) if idx is not None else set()


def cached_videos(cache, dataset: str) -> set[str]:
    """Every video the cache holds for a dataset: its index rows and its group folders."""
    folder = store.dataset_dir(cache, dataset) / "videos"
    groups = {d.name for d in folder.iterdir() if d.is_dir()} if folder.is_dir() else set()
    return groups | _rows(cache, dataset)


def not_listed(cache, dataset: str, listed: set[str]) -> list[str]:
    """The cached videos of a dataset that are not in ``listed``, its whole listing, sorted."""
    return sorted(cached_videos(cache, dataset) - listed)


def reconcile(cache, dataset: str, listed: set[str], prune: bool = False) -> Reconciled:
    """Mark (or, with ``prune``, delete) the cached videos of a dataset that are not in ``listed``, the dataset's
    whole listing. The caller holds the dataset's features lock and updates the index (Reconciled's lists)."""
    out = Reconciled()
    why = f"is no longer in dataset {dataset!r} (not listed by the `features` run of {time.strftime('%Y-%m-%d %H:%M')})"
    rows = _rows(cache, dataset)
    for video in not_listed(cache, dataset, listed):
        status = store.group_status(cache, dataset, video)
        if prune:
            shutil.rmtree(store.video_dir(cache, dataset, video), ignore_errors=True)
            resume.drop_rebuild(cache, dataset, video)
            out.pruned.append(video)
        elif status == "done":
            g = store.open_video(cache, dataset, video, mode="r+")
            if not g.attrs.get(store.UNLISTED):
                g.attrs[store.UNLISTED] = why
            out.marked.append(video)
        elif video in rows:   # a failure record; a partial group is kept (no reader uses it) for a resume
            out.dropped.append(video)
    return out
