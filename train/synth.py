"""A small synthetic but learnable feature cache (tests, benchmarks), written through pipeline.store.

Arousal follows the energy of the motion rows in the centred 12-row window (so only the temporal stream can
see it); valence follows the projection of resnet50 on a fixed direction (so the spatial stream can). Both are
smooth random signals in [-1, 1]. A few frames are invalid and a few labels NaN, as in real caches.
``spatial=False`` leaves resnet50 out (a cache made with `features --stages align,motion`); ``variants`` adds
ΔPhase variants ``dphase_s0@NAME``/``dphase_s1@NAME`` (the same motion energy, other values) under their own
fingerprints, as `features --motion-variant NAME` does. ``splits`` names each video's split (e.g. Aff-Wild2's
`train`/`validation`) instead of the last ``test_videos`` being `test`; ``names`` gives the ids (e.g. OMG's
`<video>__<utterance>`); ``video_labels`` makes one label per video (OMG): the mean of its frame labels, recorded as
the pipeline records it (group attrs ``video_labels``, index columns), the frame labels NaN. ``flip`` adds the
mirrored faces' arrays (``resnet50@flip``, ``dphase_s0@flip``, ``dphase_s1@flip``, as `features --extras flip`
makes them): the maps mirrored and orientation 0 negated, and resnet50 plus a fixed offset (so a test can tell which
array an item read; the labels' signals stay).
"""
from __future__ import annotations

import numpy as np

from pipeline import store


def _smooth(rng, n: int, k: int = 25) -> np.ndarray:
    x = np.convolve(rng.standard_normal(n + 2 * k), np.hanning(2 * k + 1), mode="same")[k:k + n]
    x = x - x.mean()
    return np.tanh(1.5 * x / (x.std() + 1e-8))


def make_cache(cache, dataset: str = "synth", videos: int = 8, frames: int = 160, test_videos: int = 2,
               seed: int = 0, extras: bool = False, labelled_test: bool = True, noise: float = 0.5,
               spatial: bool = True, variants: tuple[str, ...] = (), splits: list[str] | None = None,
               names: list[str] | None = None, video_labels: bool = False, frame_rate: float = 30.0,
               flip: bool = False) -> list[str]:
    """Write ``videos`` groups of ``frames`` frames plus the index; return the video ids."""
    rng = np.random.default_rng(seed)
    direction = np.random.default_rng(12345).standard_normal(2048)
    direction /= np.linalg.norm(direction)
    ids, rows = list(names) if names else [f"v{i:02d}" for i in range(videos)], []
    names = []
    fps = {"resnet50": "synth-r", "dphase_s0": "synth-d0", "dphase_s1": "synth-d1", "labels": "synth-l",
           "valid": "synth-v"}
    for i in range(videos):
        name = ids[i]
        n = frames + int(rng.integers(0, 40))
        energy = 0.5 * (_smooth(rng, n) + 1) + 0.05          # motion amplitude per row, in (0.05, 1.05)
        val = _smooth(rng, n)
        d0 = rng.standard_normal((n, 2, 48, 48)) * energy[:, None, None, None]
        d1 = rng.standard_normal((n, 2, 24, 24)) * energy[:, None, None, None]
        d0[0] = d1[0] = 0
        win = np.convolve(np.r_[np.zeros(5), energy, np.zeros(6)], np.ones(12) / 12, mode="valid")
        aro = np.clip((win - 0.55) * 2.2, -1, 1)
        r50 = noise * rng.standard_normal((n, 2048)) + 3.0 * val[:, None] * direction[None]
        labels = np.stack([aro, val], 1).astype("f4")
        valid = np.ones(n, bool)
        valid[rng.integers(0, n, 3)] = False
        labels[rng.integers(0, n, 3)] = np.nan
        split = splits[i] if splits else "test" if i >= videos - test_videos else "train"
        if split == "test" and not labelled_test:
            labels[:] = np.nan
        attrs = {"split": split, "fps": frame_rate, "n_frames": n}
        if video_labels:
            attrs["video_labels"] = {"arousal": float(np.nanmean(labels[:, 0])),
                                     "valence": float(np.nanmean(labels[:, 1]))}
            labels[:] = np.nan
        arrays = {"valid": valid, "resnet50": r50.astype("f2"), "dphase_s0": d0.astype("f2"),
                  "dphase_s1": d1.astype("f2"), "labels": labels}
        f = dict(fps)
        if not spatial:
            del arrays["resnet50"], f["resnet50"]
        for k, var in enumerate(variants):
            sign = -1 if k % 2 == 0 else 1     # the same energy, other values
            arrays[f"dphase_s0@{var}"] = (sign * d0[:, ::-1]).astype("f2")
            arrays[f"dphase_s1@{var}"] = (sign * d1[:, ::-1]).astype("f2")
            f.update({f"dphase_s0@{var}": f"synth-d0@{var}", f"dphase_s1@{var}": f"synth-d1@{var}"})
        if flip:
            for key, d in (("dphase_s0", d0), ("dphase_s1", d1)):
                m = d[..., ::-1].copy()
                m[:, 0] *= -1
                arrays[f"{key}@flip"] = m.astype("f2")
                f[f"{key}@flip"] = f"synth-{key}@flip"
            if spatial:
                arrays["resnet50@flip"] = (r50 + 0.25).astype("f2")
                f["resnet50@flip"] = "synth-r@flip"
        if extras:
            arrays["phase_s0"] = np.cumsum(d0, 0).astype("f2")
            arrays["phase_s1"] = np.cumsum(d1, 0).astype("f2")
            arrays["flow"] = d0.astype("f2")
            f.update(phase_s0="synth-p0", phase_s1="synth-p1", flow="synth-f")
        store.write_video(cache, dataset, name, arrays, attrs, f)
        rows.append(store.index_row(cache, dataset, name))
        names.append(name)
    store.write_index(cache, dataset, rows)
    return names
