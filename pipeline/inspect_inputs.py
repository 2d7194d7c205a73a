"""What `cli.py inspect` reads, checked before it writes anything: the cache, dataset and video named (a typo is
told as one, with what is there), the per-frame curves of --truth and the predictions of --predictions (a file that
is not there, cannot be read or is not this video's is one line naming it, not a traceback after some PNGs)."""
from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import BadInputError
from pipeline import arrays, face_transforms, store
from pipeline.wording import counted

_PASS = "pass the predictions.csv/.parquet of a train run, or the <video>.csv of a predict run"


def read_truth(path: str | Path, n: int) -> dict[str, np.ndarray]:
    """Per-frame curves to compare with the motion energy: a CSV with a header and one row per frame
    (bench/leakage.py --keep writes `micro,head,light` speeds)."""
    path = Path(path)
    try:
        data = np.genfromtxt(path, delimiter=",", names=True, dtype=np.float64)
    except (OSError, ValueError) as err:
        raise BadInputError(path, f"cannot read a CSV of per-frame curves: {err}",
                            "give a CSV with a header line and one row per frame") from None
    if data.dtype.names is None or data.ndim != 1 or len(data) != n:
        got = 0 if data.dtype.names is None else len(np.atleast_1d(data))
        raise BadInputError(path, f"{got} rows with a header, the video has {n} frames",
                            "give one row per frame under a header line of column names")
    return {k: np.asarray(data[k], np.float64) for k in data.dtype.names}


def read_predictions(path, video: str, n: int, fps: float, whole: bool = False):
    """This video's rows of a train run's predictions (a `video` column) or of predict's `<video>.csv`; refused when
    it has none, or when its frames are not the cached video's (another extraction of it): plotted, they would sit
    against labels they were not made for. ``whole``: the video has one label, and a file of one prediction per
    video (no frame column) gives its row, drawn over the whole video."""
    df = _read_table(Path(path))
    if "frame" not in df and whole and {"video", "arousal", "valence"} <= set(df):
        row = df[df.video == video]
        if row.empty:
            raise BadInputError(path, f"no prediction for video {video!r}", "pass the predictions.csv of a predict "
                                "or train run that predicted it")
        end = max(n - 1, 1) / fps
        return {"time": [0.0, end], **{d: [float(row[d].iloc[0])] * 2 for d in ("arousal", "valence")}}
    if "frame" not in df:
        raise BadInputError(path, "no frame column: not per-frame predictions (a run on one label per video, as "
                            "OMG's, predicts one value per video, nothing to draw over time)",
                            "pass predictions.csv/.parquet of a per-frame train run, or <video>.csv of a predict run")
    if "video" in df:
        held = sorted(map(str, df.video.unique()))
        df = df[df.video == video]
        if df.empty:
            raise BadInputError(path, f"no predictions for video {video!r} (it holds {', '.join(held[:4])}"
                                f"{' ...' if len(held) > 4 else ''})", "pass the predictions of a run that held "
                                "this video out, or predict it: `cli.py predict --cache ... --split ...`")
    elif Path(path).stem != video:   # predict writes one <video>.csv per video, with no video column
        raise BadInputError(path, f"holds the predictions of {Path(path).stem!r} (predict names its files after the "
                            f"video), not of {video!r}", f"pass {Path(path).with_name(video + '.csv')}")
    last = int(df.frame.max()) if len(df) else -1
    if len(df) != n or last != n - 1:
        raise BadInputError(path, f"{len(df)} predicted frames of {video!r} (up to frame {last}), but "
                            f"the cached video has {n}: they were made from another extraction of it",
                            "predict it again from this cache")
    return df.assign(time=df.frame / fps)   # the labels' clock: a run's file has no time, and not every video is 30 fps


def _read_table(path: Path) -> pd.DataFrame:
    """A predictions file as a table: CSV by its suffix, else Parquet."""
    if not path.is_file():
        raise BadInputError(path, "no such predictions file" if not path.exists() else "not a file", _PASS)
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as e:   # unreadable, not CSV/Parquet, cut short: which file, not a pandas traceback
        raise BadInputError(path, f"cannot be read as {'CSV' if path.suffix.lower() == '.csv' else 'Parquet'} "
                            f"({type(e).__name__}: {str(e)[:200]})", _PASS) from None


def locate(cache: str | Path, dataset: str, video: str) -> None:
    """Refuse a cache folder, dataset or video id that is not there, saying which and what is there instead: a typo
    answered with `features ...` sent the user to extract again what was never missing. A video the dataset holds
    (a group, or an index row of a failed extraction) passes: store.check_arrays says what it lacks and the repair."""
    cache = Path(cache)
    if not cache.is_dir():
        raise BadInputError(cache, "no such cache folder", "give the --cache folder a `features` run wrote; `cli.py "
                            "info --cache DIR` shows what a cache holds")
    where = store.dataset_dir(cache, dataset)
    if not _is_dataset(where):
        there = sorted(p.name for p in cache.iterdir() if _is_dataset(p))
        raise BadInputError(where, f"dataset {dataset!r} is not in the cache",
                            f"its datasets: {', '.join(there)}; pass one as --dataset" if there else
                            # no dataset: nothing recorded to repeat (store.repair_command), and which one to
                            # extract, and how, is the user's choice
                            "the cache holds no dataset yet: run `cli.py features` first")
    if store.group_status(cache, dataset, video) is not None:
        return
    idx = store.read_index(cache, dataset)
    row = None if idx is None else idx[idx.video == video]
    if row is not None and len(row):
        error = row.error.iloc[0]
        if isinstance(error, str) and error:   # why it has no group; what to run after fixing it
            fix = store.repair_hint(cache, dataset, store.rebuild_names(cache, dataset))
            raise BadInputError(store.video_dir(cache, dataset, video), f"the extraction of video {video!r} failed: "
                                f"{error}", f"fix that, then run {fix}")
        return
    groups = where / "videos"
    held = sorted({*([] if idx is None else map(str, idx.video)),
                   *(p.name for p in (groups.iterdir() if groups.is_dir() else ()) if p.is_dir())})
    close = difflib.get_close_matches(video, held, n=5)
    listing = (f"did you mean {', '.join(close)}?" if close else f"its videos include {', '.join(held[:5])}"
               if held else "it holds no video yet")
    raise BadInputError(where, f"no video {video!r} in dataset {dataset!r} ({counted(len(held), 'video')})",
                        f"{listing}; `cli.py info --cache {cache}` summarises the cache")


def _is_dataset(folder: Path) -> bool:
    """Whether a cache's folder holds a dataset: its index, or video groups (a first run killed before the index)."""
    return (folder / "index.parquet").is_file() or (folder / "videos").is_dir()


def check_motion(cache: str | Path, dataset: str, video: str, g, motion: str) -> None:
    """Refuse a ΔPhase input (``--input dphase@v``) that the done group ``g`` lacks while it holds others, listing
    those first: `dphase@nope` (a typo) answered only with the command computing a variant "nope" made a new one."""
    if arrays.input_arrays(motion)[0] in g:
        return
    held = sorted("dphase" + (f"@{v}" if v else "") for base, v in map(arrays.split_name, g.array_keys())
                  if base == "dphase_s0")
    if not held:
        return   # no ΔPhase at all: store.check_arrays names the features command that makes it
    variant = arrays.split_name(motion)[1]
    new = face_transforms.motion_part(variant) not in (None, *arrays.MOTION_VARIANTS)
    make = store.repair_command(cache, dataset, arrays.input_arrays(motion))
    raise BadInputError(store.video_dir(cache, dataset, video), f"video {video!r} has no {motion}; its ΔPhase: "
                        f"{', '.join(held)}", f"pass one of them as --input; or compute {motion} first: `{make}`"
                        + (" (a name not made before takes the --motion-* flags that define it)" if new else ""))
