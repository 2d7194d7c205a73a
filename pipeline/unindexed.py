"""Done groups on disk that their dataset's index has no row for.

The index is the record of what is done: every reader takes its videos from it (train.videos.select, predict from a
cache, export), so a done group without a row (index.parquet restored from a backup, a row lost to a hand edit or a
copy) is read by none of them. Left unsaid, that changes numbers: train would fold and score without the video,
predict would score a split without it, export would write a file without it. So each says so, as it says an
unusable video: train refuses (--skip-unusable leaves them out, listed in metrics.json), predict reports them as
failed, export leaves them out and exits 1 (as for a done row without its group), and `info --cache` names them.

The repair is a `features` run over the dataset with the flags that made the cache (store.repair_command repeats
what the cache recorded: pipeline/rerun.py): it finds the group done, skips
it and writes its row from the group (extract.plan, graph.update_index); a video the dataset no longer lists gets a
row marking it so (pipeline/unlisted.py). Groups not done (an interrupted extraction) are not these: no reader uses
them whatever the index says, and `info` lists them as partial.
"""
from __future__ import annotations

import pandas as pd

from pipeline import store
from pipeline.ids import id_problem


def without_row(cache, dataset: str, idx: pd.DataFrame | None = None) -> list[str]:
    """The done groups of a dataset that its index (``idx``, read if not given) has no row for, sorted."""
    folder = store.dataset_dir(cache, dataset) / "videos"
    if not folder.is_dir():
        return []
    if idx is None:
        idx = store.read_index(cache, dataset)
    rows = set() if idx is None else set(map(str, idx.video))
    # a hidden or odd folder (a copy's leftovers) is no group `features` made: store.video_dir would refuse its name
    names = sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name not in rows and not id_problem(d.name))
    return [v for v in names if store.group_status(cache, dataset, v) == "done"]


def problem(cache, dataset: str, video: str) -> str:
    """Why a reader does not use such a group."""
    return (f"video {video!r} has a done group ({store.video_dir(cache, dataset, video)}) but no row in "
            f"{store.dataset_dir(cache, dataset) / 'index.parquet'} (restored from a backup, or a row lost), which is "
            "the record of what is done: no reader uses it")


def hint(cache, dataset: str) -> str:
    """What writes their rows."""
    # the arrays the done videos hold, not none: videos that are not done are extracted by the same run, and
    # with no arrays named it would make their faces only
    return (f"run {store.repair_hint(cache, dataset, store.rebuild_names(cache, dataset))} (the flags the cache "
            "recorded): done videos are skipped and their rows written from their groups")


def in_splits(cache, dataset: str, videos: list[str], splits) -> list[str]:
    """Those of ``videos`` whose group records one of ``splits`` (all with None)."""
    if splits is None:
        return list(videos)
    wanted = {str(s) for s in splits}
    return [v for v in videos if str(store.open_video(cache, dataset, v).attrs.get("split")) in wanted]


def labelled_ones(cache, dataset: str, videos: list[str]) -> list[str]:
    """Those of ``videos`` not known to be unlabelled (a test list's entries, which training never reads)."""
    return [v for v in videos if store.labelled(store.open_video(cache, dataset, v).attrs) is not False]


def listing(videos: list[str], limit: int = 5) -> str:
    """A few of ``videos``, and how many more."""
    return ", ".join(videos[:limit]) + (f" and {len(videos) - limit} more" if len(videos) > limit else "")
