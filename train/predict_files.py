"""The per-video files `predict` writes: `<video>.csv` and its plot, and the ABAW challenge's `<video>.txt` (the folder
they go to, and predict.json beside them: train/predict_out.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import BadInputError
from pipeline import store
from pipeline.plots import save_captioned
from train.evaluate import fill_nearest


def label_frame_diff(row: dict) -> int:
    """Annotation lines minus cached frames of an index row (0 for unlabelled videos and rows made before it)."""
    return _diff(row, "label_frame_diff")


def _diff(row: dict, column: str) -> int:
    d = row.get(column)
    return int(d) if d is not None and d is not pd.NA and np.isfinite(d) else 0


def frames_counted(attrs) -> str:
    """Where a cached video's frame count came from, as the words before the number: "the video decodes to", "the
    video's container says" (organiser crops with their video: nothing decoded), "the annotation file has" (crops
    without it); recorded by `features` (extract.build), else as its face source implies."""
    said = attrs.get("frames_counted")
    if said:
        return str(said)
    return "the cache holds" if attrs.get("faces") == "cropped_aligned" else "the video decodes to"


def abaw_frame_diff(row: dict) -> tuple[int, str]:
    """(lines of the video's ABAW file beyond its cached frames, whose count that is).

    ABAW scores one line per frame as the organisers count them. A labelled video's annotation file is that count
    (label_frame_diff, accepted by `features --label-slack`): the ground truth the file is scored against. An
    unlabelled (test) entry whose organiser crops are numbered past its cached frames (faces_frame_diff, accepted by
    --label-slack) has at least as many frames as its last crop says: the organisers made a crop of that frame, so
    they count it, and a file cut at the container's count would lack its last lines. Crops that stop before the
    end say nothing (frames after the last face leave no file)."""
    diff = label_frame_diff(row)
    if diff:
        return diff, "as its annotation file has"
    crops = _diff(row, "faces_frame_diff")
    if crops > 0 and row.get("faces") == "cropped_aligned" and store.known_unlabelled(row):
        return crops, f"to its last organiser crop ({int(row['n_frames']) + crops:05d}.jpg)"
    return 0, ""


def cut_short(cache, dataset: str, row: dict, attrs) -> str | None:
    """Why an unlabelled video's ABAW lines cannot be told, else None: it decoded to clearly fewer frames than its
    header declares (`features` kept the frames and noted it, index `note`). Nothing else counts its frames (a
    labelled video's annotation file does: features accepted it only where the labels fit the frames decoded), so a
    file of the frames decoded would lack the organisers' last lines, and padding it would repeat one prediction
    over frames no model saw."""
    declared = int(attrs.get("declared_frames") or 0)
    if not declared or not store.known_unlabelled(row):
        return None
    n = int(row["n_frames"])
    then = ("predict it again (its file is extracted anew)" if dataset == "videos" else   # video files: predict's cache
            f"run `{store.repair_command(cache, dataset, store.rebuild_names(cache, dataset))}`")
    return (f"{attrs.get('source') or row.get('source')}: decoded {n} of the {declared} frames its header declares "
            f"(the file is cut or damaged, or its header is wrong): its ABAW lines would stop at frame {n} of "
            f"{declared}, or repeat one prediction over the {declared - n} frames no model saw; nothing written for "
            f"it (re-copy the video, or re-encode it, which also rewrites a wrong header, then {then})")


def write_abaw(out: Path, row: dict, res: dict) -> Path:
    """`<video>.txt` as ABAW reads it: `valence,arousal`, a line per frame, no gaps, values in [-1, 1].

    A video whose frame count as the organisers count it differs from its cached frames (``abaw_frame_diff``: a
    labelled video's annotation file, an unlabelled one's organiser crops numbered past the container's count) gets
    that count, so the file lines up with the ground truth it is scored against: the lines past the last frame
    repeat its prediction (the nearest in time, as for frames without a face; --label-slack likewise took the
    difference to be at the end)."""
    filled = fill_nearest(res["pred"], res["valid"])
    if not np.isfinite(filled).all():
        raise BadInputError(None, f"no face in any of its {len(filled)} frames: nothing to fill its ABAW file with",
                            "check the video (or its crops) and its `features` run")
    diff = abaw_frame_diff(row)[0]
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
