"""The per-video files `predict` writes: `<video>.csv` and its plot, and the ABAW challenge's `<video>.txt`; and
which of an earlier call's files a later call into the same folder removes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import BadInputError
from pipeline.plots import save_captioned
from train.evaluate import fill_nearest


def label_frame_diff(row: dict) -> int:
    """Annotation lines minus decoded frames of an index row (0 for unlabelled videos and rows made before it)."""
    d = row.get("label_frame_diff")
    return int(d) if d is not None and np.isfinite(d) else 0


def written_before(out: Path) -> set[str]:
    """The file names an earlier call's `predict.json` in ``out`` lists as written (none if it is absent or
    unreadable); plain names in ``out`` only, so a hand-edited listing cannot reach outside it or predict.json."""
    try:
        names = json.loads((out / "predict.json").read_text()).get("written") or []
    except (OSError, ValueError, AttributeError):
        return set()
    return {n for n in names if isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..", "predict.json")}


def remove_earlier(out: Path, written, failed) -> None:
    """Make ``out`` hold this call's files only, as the predict.json about to be written says: an earlier call's files
    that this one did not write (other videos, or a video that failed now) would pass for this call's. Only the files
    an earlier predict.json lists, and a failed video's, are removed: anything else in the folder is the user's."""
    mine = {Path(p).name for p in written}
    stale = written_before(out) | {f"{video}{ext}" for video, _ in failed for ext in (".csv", ".png", ".txt")}
    for name in sorted(stale - mine):
        if (out / name).is_file():
            (out / name).unlink()


def write_abaw(out: Path, row: dict, res: dict) -> Path:
    """`<video>.txt` as ABAW reads it: `valence,arousal`, a line per frame, no gaps, values in [-1, 1].

    A labelled video whose annotation file has more or fewer lines than the video decodes to (accepted by
    `features --label-slack`, recorded as label_frame_diff) gets the annotation's count, so the file lines up with
    the ground truth it is scored against: the lines past the last frame repeat its prediction (the nearest in
    time, as for frames without a face; --label-slack likewise took the difference to be at the end)."""
    filled = fill_nearest(res["pred"], res["valid"])
    if not np.isfinite(filled).all():
        raise BadInputError(None, f"no face in any of its {len(filled)} frames: nothing to fill its ABAW file with",
                            "check the video (or its crops) and its `features` run")
    diff = label_frame_diff(row)
    if diff > 0:
        filled = np.concatenate([filled, np.repeat(filled[-1:], diff, axis=0)])
    elif diff < 0:
        filled = filled[:diff]
    path = out / f"{row['video']}.txt"
    lines = "".join(f"{v:.6f},{a:.6f}\n" for a, v in np.clip(filled.astype(np.float64), -1, 1))
    path.write_text("valence,arousal\n" + lines)
    return path


def write_prediction(out: Path, row: dict, res: dict, caption: str | None = None) -> list[Path]:
    """`<video>.csv` (frame, time, arousal, valence, valid) and `<video>.png`."""
    n = len(res["pred"])
    fps = float(row.get("fps") or 30.0)
    valid = res["valid"].astype(bool)
    pred = res["pred"].astype(np.float32)
    pred[~valid] = np.nan     # no face, no prediction: the row stays so frames keep their numbers
    df = pd.DataFrame({"frame": np.arange(n), "time": np.arange(n) / fps, "arousal": pred[:, 0],
                       "valence": pred[:, 1], "valid": valid})
    csv = out / f"{row['video']}.csv"
    df.to_csv(csv, index=False, float_format="%.5f")
    png = out / f"{row['video']}.png"
    _plot(png, df, row["video"], caption)
    return [csv, png]


def _plot(path: Path, df: pd.DataFrame, title: str, caption: str | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(df.time, df.arousal, label="arousal", lw=1)
    ax.plot(df.time, df.valence, label="valence", lw=1)
    ax.fill_between(df.time, -1, 1, where=~df.valid.to_numpy(), color="0.88", step="mid", label="no face")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("seconds")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right", ncol=3)
    fig.tight_layout()
    save_captioned(fig, path, caption, 110)
    plt.close(fig)
