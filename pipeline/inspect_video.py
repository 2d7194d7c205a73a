"""`cli.py inspect`: look at what the cache holds for one video (aligned faces, ΔPhase maps, motion energy, labels)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from features.errors import BadInputError
from pipeline import arrays, chunks, store
from pipeline.inspect_inputs import check_motion, locate, read_predictions, read_truth
from pipeline.plots import save_captioned

SMOOTH = 6.0  # frames: the Gaussian that bench/leakage.py smooths the motion curves with before correlating them


def robust_scale(maps: np.ndarray, q: float = 99.0) -> float:
    """Symmetric colour limit for ΔPhase maps: the q-th percentile of |ΔPhase| over them (rad), at least 1e-3.

    A fixed ±1 rad showed a 0.5 px micro-motion (~0.1 rad) as nearly blank; a percentile follows what the shown
    frames hold, and a few extreme pixels (clamped phase wraps) do not wash the rest out.
    """
    a = np.abs(np.asarray(maps, np.float32))
    return max(float(np.percentile(a, q)), 1e-3) if a.size else 1.0


def inspect_video(cache: str | Path, dataset: str, video: str, out: str | Path,
                  predictions: str | Path | None = None, n_show: int = 8, frames: list[int] | None = None,
                  truth: str | Path | None = None, motion: str | None = None) -> list[Path]:
    """Write PNGs: aligned faces with their ΔPhase maps, the motion energy over time (beside `truth` curves if
    given), and the labels (and predictions) over time. `frames` picks the shown frames (else evenly spaced);
    `motion` a ΔPhase variant ("dphase@v1"; None: plain dphase if the video has it), its files named after it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind, variant = arrays.parse_input(motion or "dphase")
    if kind.name != "dphase":
        raise BadInputError(None, f"{motion!r} is not ΔPhase", "give dphase or a variant of it, e.g. dphase@v1")
    locate(cache, dataset, video)   # a typo in a name is told as one, not answered with `features ...`
    # checked in the group itself: a stale or damaged array is refused with the command that repairs it
    names = ["valid", "face48", "labels"]
    dp = arrays.input_arrays(motion or "dphase")[0]   # scale 0
    done = store.group_status(cache, dataset, video) == "done"
    if done and motion:
        check_motion(cache, dataset, video, store.open_video(cache, dataset, video), motion)
    if motion or not done or dp in store.open_video(cache, dataset, video):   # not done: its repair makes dp
        names.append(dp)
    fps = store.check_arrays(cache, dataset, video, names)
    g = store.open_video(cache, dataset, video)
    n = int(g.attrs["n_frames"])

    def read(name: str, lo: int, hi: int) -> np.ndarray:   # a damaged chunk: one line naming it and the repair
        return chunks.read_rows(cache, dataset, video, g, name, lo, hi)

    valid = read("valid", 0, n)
    curves = read_truth(truth, n) if truth else None
    if frames:
        bad = [t for t in frames if not 1 <= t < n]
        if bad:
            raise BadInputError(None, f"frames {bad} are outside 1..{n - 1} of video {video!r}",
                                "ΔPhase row t compares frame t with t-1: pick frames from 1 on")
        shown = np.asarray(sorted(frames), int)
    else:
        shown = np.linspace(1, n - 1, min(n_show, n - 1)).astype(int)
    rate = float(g.attrs.get("fps") or 30.0)
    pred = read_predictions(predictions, video, n, rate, video_label(g) is not None) if predictions else None
    out = Path(out)   # every input checked: from here on files are written
    out.mkdir(parents=True, exist_ok=True)
    tag = f"_{variant}" if variant else ""
    has = [dp] if dp in g else []

    def made_by(drawn: list[str], files: dict) -> str:   # every plot says what data made it (fingerprints, files)
        return caption(cache, dataset, video, {a: fps[a] for a in drawn}, files)

    paths = [_faces_png(plt, g, read, video, shown, valid, out, dp, tag, made_by(["face48", *has, "valid"], {}))]
    if has:
        paths.append(_motion_png(plt, g, read, video, n, valid, curves, out, dp, tag,
                                 made_by([dp, "valid"], {"truth": truth})))
    paths.append(_labels_png(plt, g, read, video, n, valid, pred, out,
                             made_by(["labels", "valid"], {"predictions": predictions})))
    return paths


def caption(cache, dataset: str, video: str, fingerprints: dict[str, str], files: dict) -> str:
    """What made one of inspect's PNGs, for its caption and Description: the cache, dataset and video, the arrays
    drawn with their fingerprints (the group's attrs), and the files drawn beside them ({what: path or None})."""
    drawn = ", ".join(f"{a} {fp}" for a, fp in fingerprints.items())
    beside = "".join(f"; {what} {Path(path).resolve()}" for what, path in files.items() if path)
    return f"cache {Path(cache).resolve()}, dataset {dataset}, video {video}\narrays: {drawn}{beside}"


def _faces_png(plt, g, read, video, shown, valid, out, dp: str, tag: str, text: str) -> Path:
    has = dp in g
    maps = np.stack([read(dp, int(t), int(t) + 1)[0] for t in shown]).astype(np.float32) if has else None
    lim = robust_scale(maps) if has else 1.0
    fig, ax = plt.subplots(3, len(shown), figsize=(1.6 * len(shown) + 0.9, 5), squeeze=False)
    im = None
    for j, t in enumerate(shown):
        ax[0, j].imshow(read("face48", int(t), int(t) + 1)[0], cmap="gray", vmin=0, vmax=255)
        ax[0, j].set_title(f"t={t}{'' if valid[t] else ' (no face)'}", fontsize=7)
        if has:
            for o in range(2):
                im = ax[1 + o, j].imshow(maps[j, o], cmap="coolwarm", vmin=-lim, vmax=lim)
    for a in ax.ravel():
        a.axis("off")
    ax[1, 0].set_title(f"{dp.replace('_s0', '')} x", fontsize=7, loc="left")
    ax[2, 0].set_title(f"{dp.replace('_s0', '')} y", fontsize=7, loc="left")
    top = 1 - 0.4 / fig.get_figheight()   # room for the caption: tight_layout cannot run again past the colour bar
    fig.tight_layout(rect=(0, 0, 1 - 0.6 / fig.get_figwidth(), top))
    if im is not None:
        bar = fig.colorbar(im, ax=ax[1:, :].ravel().tolist(), fraction=0.02, pad=0.01)
        bar.set_label(f"rad (scale 0; ±{lim:.3g} = 99th pct. of |ΔPhase| shown)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    path = out / f"{video}_faces{tag}.png"
    save_captioned(fig, path, text, 110, layout=False)
    plt.close(fig)
    return path


def motion_energy(g, read, n, valid, dp: str):
    """(energy [n], rows [n], smooth [n] or None): mean |ΔPhase| per row (read in time chunks), the rows that have
    ΔPhase (the frame and the one before it have a face), and its blur over those rows only (NaN elsewhere).

    The blur is normalised, G*(m e) / G*m with m the rows: interpolating across frames without a face, as before,
    drew a made-up hump where there is no data, and bent the curve beside the gap towards it."""
    from scipy.ndimage import gaussian_filter1d

    step = max(1, int(g[dp].chunks[0]))
    energy = np.concatenate([np.abs(read(dp, i, i + step).astype(np.float32)).mean(axis=(1, 2, 3))
                             for i in range(0, n, step)])
    rows = valid.copy()
    rows[1:] &= valid[:-1]
    rows[0] = False
    if rows.sum() < 2:
        return energy, rows, None
    num = gaussian_filter1d(np.where(rows, energy, 0.0), SMOOTH, mode="constant")
    den = gaussian_filter1d(rows.astype(np.float64), SMOOTH, mode="constant")
    return energy, rows, np.where(rows, num / np.maximum(den, 1e-12), np.nan)


def motion_figure(plt, g, read, video, n, valid, curves, dp: str):
    """Mean |ΔPhase| (scale 0) per frame, read in time chunks; with `curves`, each curve's correlation with it.
    The time axis spans the video; a video with no ΔPhase row (no face in any frame, or never in two frames in a
    row) says so on the axes, which were drawn empty."""
    from scipy.ndimage import gaussian_filter1d

    energy, rows, smooth = motion_energy(g, read, n, valid, dp)
    rate = float(g.attrs.get("fps") or 30.0)
    time = np.arange(n) / rate
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(time, np.where(rows, energy, np.nan), lw=0.6, color="0.6", label="mean |ΔPhase| (scale 0)")
    if smooth is not None:
        ax.plot(time, smooth, lw=1.5, color="k", label=f"smoothed ({SMOOTH:g} frames)")
    ax.set_xlim(0, max(time[-1], 1 / rate))
    if not rows.any():
        why = "no face in any frame" if not valid.any() else "no two frames in a row with a face"
        ax.text(0.5, 0.5, f"{why}: no ΔPhase to draw", transform=ax.transAxes, ha="center", va="center")
    ax.set_ylabel("rad")
    ax.set_xlabel("seconds")
    if curves:
        twin = ax.twinx()
        for name, y in curves.items():
            ys = gaussian_filter1d(y, SMOOTH)
            r = np.corrcoef(smooth[rows], ys[rows])[0, 1] if smooth is not None and ys[rows].std() > 0 else np.nan
            twin.plot(time, ys, lw=1, label=f"{name} (smoothed), r = {r:.2f}")
        twin.set_ylabel("truth (own units)")
        twin.legend(fontsize=7, loc="upper right")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{video}: motion energy over time ({dp.replace('_s0', '')})", fontsize=8)
    fig.tight_layout()
    return fig


def _motion_png(plt, g, read, video, n, valid, curves, out, dp: str, tag: str, text: str) -> Path:
    fig = motion_figure(plt, g, read, video, n, valid, curves, dp)
    path = out / f"{video}_motion{tag}.png"
    save_captioned(fig, path, text, 110)
    plt.close(fig)
    return path


def labels_figure(plt, g, read, video, n, valid, predictions=None, pred=None):
    """Labels (and predictions) over the whole video, frames without a face shaded. The time axis spans the video
    whatever is drawn (an unlabelled entry draws only the shading, which alone would set the axis to its extent),
    and the title says when the video has no labels. A video with one label for all its frames (an OMG utterance)
    draws it as a level line, and its model's one prediction (predictions.csv of predict, or of a train run) too.
    ``pred``: the rows read_predictions read from ``predictions`` (read here when not given)."""
    fps = float(g.attrs.get("fps") or 30.0)
    time = np.arange(n) / fps
    whole = video_label(g)
    labels = np.tile(whole, (n, 1)) if whole is not None else read("labels", 0, n)
    fig, ax = plt.subplots(2, 1, figsize=(9, 4), sharex=True)
    if pred is None and predictions:
        pred = read_predictions(predictions, video, n, fps, whole is not None)
    for i, dim in enumerate(("arousal", "valence")):
        lo, hi = value_range(labels[:, i], None if pred is None else pred[dim])
        ax[i].plot(time, labels[:, i], label="label" + (" (one per video)" if whole is not None else ""), lw=1)
        if pred is not None:
            ax[i].plot(pred["time"], pred[dim], label="prediction", lw=1)
        ax[i].fill_between(time, lo, hi, where=~valid, color="0.85", label="no face", step="mid")
        ax[i].set_ylabel(dim)
        ax[i].set_ylim(lo - 0.05, hi + 0.05)
    ax[1].set_xlim(0, max(time[-1], 1 / fps))
    labelled = int(np.isfinite(labels).all(1).sum())
    what = (f"one label for the video (arousal {whole[0]:.3f}, valence {whole[1]:.3f})" if whole is not None
            else f"{labelled} labelled")
    ax[0].set_title(f"{video}: {n} frames, {what}, {int(valid.sum())} with a face"
                    + ("; no labels (an unlabelled entry)" if not labelled else ""), fontsize=9)
    ax[0].legend(fontsize=7, loc="upper right")
    ax[1].set_xlabel("seconds")
    fig.tight_layout()
    return fig


def value_range(*curves) -> tuple[float, float]:
    """The span to draw: the labels' [-1, 1], widened to every finite value drawn. A model's outputs are not bounded
    (a linear head trained on 1-CCC): a prediction outside [-1, 1] was cut off the axis, so the figure showed a
    "prediction" in its legend and no line, or part of one, without a word."""
    values = np.concatenate([np.asarray(c, np.float64).ravel() for c in curves if c is not None])
    values = values[np.isfinite(values)]
    return (min(-1.0, float(values.min())), max(1.0, float(values.max()))) if values.size else (-1.0, 1.0)


def video_label(g) -> np.ndarray | None:
    """(arousal, valence) of a video labelled as a whole (OMG: attrs video_labels), else None."""
    lab = g.attrs.get("video_labels")
    if not isinstance(lab, dict) or lab.get("arousal") is None or lab.get("valence") is None:
        return None
    return np.array([float(lab["arousal"]), float(lab["valence"])])


def _labels_png(plt, g, read, video, n, valid, pred, out, text: str) -> Path:
    fig = labels_figure(plt, g, read, video, n, valid, pred=pred)
    path = out / f"{video}_labels.png"
    save_captioned(fig, path, text, 110)
    plt.close(fig)
    return path
