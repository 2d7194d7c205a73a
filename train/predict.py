"""`cli.py predict`: run the feature stages on new videos, then a trained model; per-frame CSV and a plot per video.

Features are computed with the settings recorded in the checkpoint (motion settings, face tracker, seed) into a
cache beside the outputs (`<out>/cache`, dataset `videos`), so a second predict on the same videos is instant.
The arrays' fingerprints must equal those the model was trained on: other backbone weights, other motion
settings or other code versions are refused with a message saying which array differs. Each video's arrays are
checked in its own group (``store.check_arrays``); a video that cannot be read is reported as failed, with the
command that repairs it. Checkpoints are read with ``torch.load(weights_only=True)`` (train/checkpoint.py).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from features.errors import BadInputError
from pipeline import extract, graph, store
from pipeline.manifest import videos_from_files
from train import checkpoint, config, data
from train.config import TrainConfig, used_arrays
from train.evaluate import predict
from train.model import MimamoNet
from train.videos import check_fingerprints, usable


def load_checkpoint(path: str | Path) -> tuple[MimamoNet, TrainConfig, dict]:
    """The model (eval mode), its training config, and the raw checkpoint dict."""
    ck = checkpoint.load(path)
    try:
        model = MimamoNet(**ck["model_args"])
        model.load_state_dict(ck["model"])
        cfg = config.from_dict(ck["config"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise BadInputError(path, f"not a mimamo checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})",
                            "pass the best.pt written by `cli.py train`") from None
    return model.eval(), cfg, ck


def feature_settings(ck: dict, weights: str | None, device: str) -> extract.Settings:
    """The extraction settings the training cache used, with the user's weights file and device."""
    from features.backbone import resolve_weights

    saved = dict(ck.get("feature_settings") or {})
    names = {f.name for f in dataclasses.fields(extract.Settings)}
    saved = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in names}
    was_random = str(saved.get("weights", "random")) == "random"
    w = weights if weights is not None else ("random" if was_random else None)
    saved.update(weights="random" if w == "random" else resolve_weights(w), device=device)
    return extract.Settings(**saved)


def predict_videos(videos: list[str | Path], checkpoint_path: str | Path, out: str | Path, *,
                   weights: str | None = None, device: str = "cpu", workers: int | None = None, progress: bool = True,
                   echo=print) -> dict:
    """Features, then the model, for each video; returns {"written": [paths], "failed": [(video, error)]}."""
    model, cfg, ck = load_checkpoint(checkpoint_path)
    out = Path(out)
    cache = out / "cache"
    entries = videos_from_files(videos)
    s = feature_settings(ck, weights, device)
    summary = graph.run(entries, cache, "videos", s, workers=workers or min(len(entries), 2), progress=progress,
                        echo=echo)
    failed = [(r["video"], r["error"]) for r in summary.failed]
    names = used_arrays(cfg)
    tried = [e.video for e in entries if e.video not in {v for v, _ in failed}]
    fps, bad = usable(cache, "videos", tried, [*names, "valid"], skip=True)
    failed += [(v, f"{why} (run `{store.repair_command(cache, 'videos', names)}`)") for v, why in bad.items()]
    for have in fps.values():
        check_fingerprints({k: ck["fingerprints"].get(k) for k in names}, have, checkpoint_path)
    rows = [r for r in data.video_table(cache, "videos") if r["video"] in fps]
    written = []
    if rows:
        ds = data.SequenceDataset(cache, "videos", rows, window=cfg.window, input=cfg.input, streams=cfg.streams,
                                  length=cfg.length, stride=cfg.length, test=True, cache_mb=cfg.cache_mb)
        dev = torch.device(device)
        res = predict(model.to(dev), ds, cfg.window, cfg.batch_size, 0, dev)
        for i, r in enumerate(rows):
            written += write_prediction(out, r, res[i])
    return {"written": written, "failed": failed}


def write_prediction(out: Path, row: dict, res: dict) -> list[Path]:
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
    _plot(png, df, row["video"])
    return [csv, png]


def _plot(path: Path, df: pd.DataFrame, title: str) -> None:
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
