"""A training run's files: log.csv/log.jsonl, metrics.json, predictions.parquet/.csv, curves.png, predictions.png."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.plots import save_captioned
from pipeline.wording import counted

# Every file this module writes into a run folder.
OUTPUTS = ("metrics.json", "predictions.parquet", "predictions.csv", "log.csv", "log.jsonl", "curves.png",
           "predictions.png")


def clean(x):
    """JSON-safe copy: NaN/inf -> None, NumPy scalars -> Python, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def tmp_path(path: Path) -> Path:
    """Where ``path`` is written before its rename: its own per file, with its suffix (pandas and matplotlib go by
    it)."""
    return path.with_name(f"{path.stem}.tmp{path.suffix}")


def atomic(path: Path, write) -> None:
    """``write(tmp)``, then rename tmp to ``path``: a kill leaves the old file or the new one, never a part of one."""
    tmp = tmp_path(path)
    write(tmp)
    tmp.replace(path)


def write_log(out: Path, history: list[dict]) -> None:
    """Per-epoch log, rewritten whole from the checkpointed history (so it always agrees with last.pt)."""
    atomic(out / "log.csv", lambda p: pd.DataFrame(history).to_csv(p, index=False))
    atomic(out / "log.jsonl", lambda p: p.write_text("".join(json.dumps(clean(r)) + "\n" for r in history)))


def read_metrics(path: Path) -> dict | None:
    """A run's metrics.json; None when it cannot be read as one (cut short or damaged: the run is not finished)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return saved if isinstance(saved, dict) else None


def frame_table(res: dict, videos: list[dict]) -> pd.DataFrame:
    """One row per held-out frame: video, frame, arousal, valence (as scored: a frame without a face holds the nearest
    prediction), label_arousal, label_valence, valid (a face was found)."""
    parts = []
    for i, v in enumerate(videos):
        r = res[i]
        n = len(r["pred"])
        pred = r.get("scored", r["pred"])
        parts.append(pd.DataFrame({"video": v["video"], "frame": np.arange(n), "arousal": pred[:, 0],
                                   "valence": pred[:, 1], "label_arousal": r["labels"][:, 0],
                                   "label_valence": r["labels"][:, 1], "valid": r["valid"]}))
    return pd.concat(parts, ignore_index=True)


def video_table(res: dict, videos: list[dict]) -> pd.DataFrame:
    """One row per held-out video (utterance): its one prediction, its labels and the snippets that made it."""
    return pd.DataFrame([{"video": v["video"], "arousal": res[i]["video"][0], "valence": res[i]["video"][1],
                          "label_arousal": v["video_arousal"], "label_valence": v["video_valence"],
                          "snippets": int(res[i]["vw"])} for i, v in enumerate(videos)])


def write_outputs(out: Path, metrics: dict, res: dict, videos: list[dict], history: list[dict],
                  plots: bool = True) -> None:
    """The predictions (per frame, or per video for video-level labels), the plots, each captioned (and its PNG's
    Description) with what made it (``caption``), then metrics.json. A finished run is one with a metrics.json
    (reuse, --resume): it goes first and comes back last, each file through a rename, so a kill never leaves one
    beside predictions that are missing, cut short or of an earlier scoring."""
    (out / "metrics.json").unlink(missing_ok=True)
    video_level = metrics.get("level") == "video"
    table = video_table(res, videos) if video_level else frame_table(res, videos)
    atomic(out / "predictions.parquet", lambda p: table.to_parquet(p, index=False))
    atomic(out / "predictions.csv", lambda p: table.to_csv(p, index=False, float_format="%.5f"))
    if plots:
        text = caption(metrics)
        atomic(out / "curves.png", lambda p: plot_curves(p, history, text,
                                                         (metrics.get("protocol") or {}).get("selection")))
        atomic(out / "predictions.png", lambda p: (plot_scatter if video_level else plot_predictions)(p, table, text))
    write_metrics(out / "metrics.json", metrics)


def write_metrics(path: Path, metrics: dict) -> None:
    """metrics.json, written last by a run (a folder with one holds a finished run), through a rename."""
    atomic(path, lambda p: p.write_text(json.dumps(clean(metrics), indent=1) + "\n"))


def caption(metrics: dict) -> str:
    """What made a run's numbers, in two lines for its plots: the run, data and model settings; the held-out
    videos, their scores and the fingerprints of the arrays read."""
    c = metrics.get("config") or {}
    prot = metrics.get("protocol") or {}
    fps = ", ".join(f"{k} {v[:8]}" for k, v in (metrics.get("fingerprints") or {}).items() if v)
    held = len((metrics.get("videos") or {}).get("test") or [])
    scores = ", ".join(f"{d} {metrics[f'ccc_{d}']:.3f}" for d in ("arousal", "valence")
                       if isinstance(metrics.get(f"ccc_{d}"), (int, float)))
    return (f"{c.get('out')}: {c.get('dataset')} in {c.get('cache')}; streams {c.get('streams')}, "
            f"input {c.get('input')}, arch {c.get('arch')}, window {c.get('window')}, width {c.get('width')}, "
            f"seed {c.get('seed')}, "
            f"{metrics.get('epochs_run')} epochs (best {metrics.get('best_epoch')})\n"
            f"held out: {metrics.get('split')} ({counted(held, 'video')}, protocol {prot.get('name')}); CCC {scores or 'n/a'}; "
            f"arrays: {fps}")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_curves(path: Path, history: list[dict], text: str | None = None, selection: str | None = None) -> None:
    """Loss (train, selection) and the selection videos' CCC per epoch. "Selection": the videos that pick the best
    epoch (a fold of the training videos), not the held-out ones, which Aff-Wild2 calls Validation_Set."""
    plt = _plt()
    h = pd.DataFrame(history)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    if len(h):
        ax[0].plot(h.epoch, h.train_loss, "o-", label="train 1-CCC")
        ax[0].plot(h.epoch, h.val_loss, "o-", label="selection 1-CCC")
        for k in ("arousal", "valence", "mean"):
            ax[1].plot(h.epoch, h[f"val_ccc_{k}"], "o-", label=k)
    ax[0].set(xlabel="epoch", ylabel="loss", title="loss")
    ax[1].set(xlabel="epoch", ylabel="CCC", title=f"CCC on the selection videos{f': {selection}' if selection else ''}")
    ax[1].title.set_fontsize(9)
    for a in ax:
        a.legend()
        a.grid(alpha=0.3)
    fig.tight_layout()
    save_captioned(fig, path, text, 100)
    plt.close(fig)


def plot_scatter(path: Path, table: pd.DataFrame, text: str | None = None) -> None:
    """One prediction per video against its label, per dimension."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(8, 4))
    for c, dim in enumerate(("arousal", "valence")):
        ax[c].scatter(table[f"label_{dim}"], table[dim], s=12)
        ax[c].set(title=dim, xlabel="label", ylabel="prediction")
        ax[c].grid(alpha=0.3)
    fig.tight_layout()
    save_captioned(fig, path, text, 90)
    plt.close(fig)


def plot_predictions(path: Path, table: pd.DataFrame, text: str | None = None, max_videos: int = 4) -> None:
    """Predictions against labels over time for the first few held-out videos."""
    plt = _plt()
    vids = list(table.video.unique())[:max_videos]
    fig, ax = plt.subplots(max(len(vids), 1), 2, figsize=(12, 2.4 * max(len(vids), 1)), squeeze=False)
    for r, vid in enumerate(vids):
        t = table[table.video == vid]
        for c, dim in enumerate(("arousal", "valence")):
            ax[r, c].plot(t.frame, t[f"label_{dim}"], "k-", lw=1, label="label")
            ax[r, c].plot(t.frame, t[dim].where(t.valid), "-", lw=1, label="prediction")
            ax[r, c].set(title=f"{vid} {dim}", xlabel="frame")
            ax[r, c].legend(fontsize=7)
    fig.tight_layout()
    save_captioned(fig, path, text, 90)
    plt.close(fig)
