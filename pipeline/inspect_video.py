"""`cli.py inspect`: look at what the cache holds for one video (aligned faces, ΔPhase maps, labels)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from features.errors import BadInputError
from pipeline import store


def inspect_video(cache: str | Path, dataset: str, video: str, out: str | Path,
                  predictions: str | Path | None = None, n_show: int = 8) -> list[Path]:
    """Write PNGs: a strip of aligned faces, ΔPhase maps of the same frames, labels (and predictions) over time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if store.group_status(cache, dataset, video) is None:
        raise BadInputError(store.video_dir(cache, dataset, video), f"video {video!r} is not in the cache",
                            f"run `{store.repair_command(cache, dataset)}`, or see `cli.py info --cache {cache}`")
    # checked in the group itself: a stale or damaged array is refused with the command that repairs it
    names = ["valid", "face48", "labels"]
    if store.group_status(cache, dataset, video) == "done" and "dphase_s0" in store.open_video(cache, dataset, video):
        names.append("dphase_s0")
    store.check_arrays(cache, dataset, video, names)
    g = store.open_video(cache, dataset, video)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = int(g.attrs["n_frames"])
    valid = g["valid"][:]
    frames = np.linspace(1, n - 1, min(n_show, n - 1)).astype(int)
    paths = []

    fig, ax = plt.subplots(3, len(frames), figsize=(1.6 * len(frames), 5), squeeze=False)
    for j, t in enumerate(frames):
        ax[0, j].imshow(g["face48"][t], cmap="gray", vmin=0, vmax=255)
        ax[0, j].set_title(f"t={t}{'' if valid[t] else ' (no face)'}", fontsize=7)
        if "dphase_s0" in g:
            d = g["dphase_s0"][t].astype(np.float32)
            for o in range(2):
                ax[1 + o, j].imshow(d[o], cmap="coolwarm", vmin=-1, vmax=1)
    for a in ax.ravel():
        a.axis("off")
    ax[1, 0].set_title("ΔPhase x", fontsize=7, loc="left")
    ax[2, 0].set_title("ΔPhase y", fontsize=7, loc="left")
    fig.tight_layout()
    paths.append(out / f"{video}_faces.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    labels = g["labels"][:]
    fps = float(g.attrs.get("fps") or 30.0)
    time = np.arange(n) / fps
    fig, ax = plt.subplots(2, 1, figsize=(9, 4), sharex=True)
    pred = _predictions(predictions, video) if predictions else None
    for i, dim in enumerate(("arousal", "valence")):
        ax[i].plot(time, labels[:, i], label="label", lw=1)
        if pred is not None:
            ax[i].plot(pred["time"], pred[dim], label="prediction", lw=1)
        ax[i].fill_between(time, -1, 1, where=~valid, color="0.85", label="no face", step="mid")
        ax[i].set_ylabel(dim)
        ax[i].set_ylim(-1.05, 1.05)
    ax[0].legend(fontsize=7, loc="upper right")
    ax[1].set_xlabel("seconds")
    fig.tight_layout()
    paths.append(out / f"{video}_labels.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def _predictions(path, video):
    import pandas as pd

    df = pd.read_csv(path) if str(path).endswith(".csv") else pd.read_parquet(path)
    df = df[df.video == video] if "video" in df else df
    if "time" not in df:
        df = df.assign(time=df.frame / 30.0)
    return df
