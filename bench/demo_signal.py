"""Evidence that the demo's labels are learnable from what the video shows; prints one JSON line.

Figures (all from one run):
- generation: seconds and bytes of the demo, seconds per second of video (the reference is the video's own length);
- codec: for one video, mean |frame difference| at the micro-motion sites after undoing the known head pose and
  lighting, correlated with the true site speed, on the raw rendered frames (reference) and after MJPG
  (chosen) and mp4v; kB per frame of each;
- valence cue: mouth-region difference between valence +1 and -1 frames over the noise between like frames;
- learnability proxies on the held-out videos (ridge regression, CCC): "appearance" = the stabilised gray face
  at low resolution (what a frame-wise model sees), "motion" = per-site frame differences over +-6 frames (what
  a 12-frame temporal model sees). Appearance should carry valence and not arousal, motion the reverse;
- ΔPhase proxy (pyrtools' complex steerable pyramid on 48x48 stabilised face crops, held-out videos): correlation
  of the per-frame phase-change energy with the true micro-motion speed, and smoothed with the arousal energy.

    python bench/demo_signal.py [--demo DIR] [--videos 8] [--seconds 10]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.demo import make_demo, read_labels
from pipeline.demo_render import (
    PATCH_X0,
    PATCH_Y0,
    background,
    render_frame,
    render_frames,
    site_box,
    stabilise,
)
from pipeline.demo_script import SITES, demo_script


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video, RGB, through the project's own streaming decoder."""
    from features.video import iter_chunks

    return [f for c in iter_chunks(path) for f in c.frames]


def encode(frames, path: Path, fourcc: str) -> int:
    w = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), 30.0, (640, 360))
    for f in frames:
        w.write(np.ascontiguousarray(f[:, :, ::-1]))
    w.release()
    return path.stat().st_size


def site_diffs(stab: list[np.ndarray]) -> np.ndarray:
    """[T, sites]: mean |difference| against the previous frame in each site's box (row 0 = 0)."""
    out = np.zeros((len(stab), len(SITES)))
    for k, name in enumerate(SITES):
        box = site_box(name)
        out[1:, k] = [np.abs(stab[t][box] - stab[t - 1][box]).mean() for t in range(1, len(stab))]
    return out


def stabilised(frames, script) -> list[np.ndarray]:
    return [cv2.GaussianBlur(stabilise(f, script, t), (0, 0), 1.0) for t, f in enumerate(frames)]


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return float(2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2))


def ridge(xtr, ytr, xte, lam: float) -> np.ndarray:
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a, b = (xtr - mu) / sd, (xte - mu) / sd
    w = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]), a.T @ (ytr - ytr.mean(0)))
    return b @ w + ytr.mean(0)


def features(video: Path, script) -> dict[str, np.ndarray]:
    stab = stabilised(decode(video), script)
    diffs = site_diffs(stab)
    pad = np.pad(diffs, ((6, 6), (0, 0)), mode="edge")
    motion = np.concatenate([pad[i:i + len(diffs)] for i in range(13)], axis=1)
    face = np.stack([cv2.resize(s[20:200, 20:170], (30, 36), interpolation=cv2.INTER_AREA).ravel() for s in stab])
    return {"motion": motion, "appearance": face}


def dphase_energy(stab: list[np.ndarray]) -> np.ndarray:
    """Amplitude-weighted mean |ΔPhase| (rigid part removed) of pyrtools' complex steerable pyramid on 48x48
    crops of the stabilised face: roughly what the temporal stream's input holds. [T], row 0 = row 1."""
    import pyrtools as pt

    bands = []
    for st in stab:
        face = st[58 - PATCH_Y0:198 - PATCH_Y0, 155 - PATCH_X0:295 - PATCH_X0]  # photo rows 58..198, cols 155..295
        crop = cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA)
        pyr = pt.pyramids.SteerablePyramidFreq(np.pad(crop, 24, mode="reflect"), height=2, order=1, is_complex=True)
        bands.append([pyr.pyr_coeffs[(sc, b)][h:-h, h:-h] for sc, h in ((0, 24), (1, 12)) for b in range(2)])
    e = np.zeros(len(stab))
    for t in range(1, len(stab)):
        for a, b in zip(bands[t], bands[t - 1]):
            d = np.angle(a * np.conj(b))
            e[t] += np.mean(np.abs(d - d.mean()) * np.abs(a)) / np.mean(np.abs(a))
    e[0] = e[1]
    return e


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, help="an existing demo directory (else one is generated in a temp dir)")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    out = args.demo or Path(tmp.name) / "demo"
    summary = make_demo(out, videos=args.videos, seconds=args.seconds, seed=0, progress=True)
    fig = {"demo_videos": len(summary["videos"]), "demo_frames": summary["frames"],
           "demo_bytes": summary["bytes"], "demo_skipped": summary["skipped"],
           "gen_seconds": summary["seconds"],
           "gen_seconds_per_video_second": round(summary["seconds"] / (summary["frames"] / 30.0), 3)}

    # Codec: raw rendered frames are the reference.
    row = summary["videos"][0]
    script = demo_script(row["seed"], row["frames"])
    t0 = time.perf_counter()
    raw = list(render_frames(script))
    fig["render_ms_per_frame"] = round(1e3 * (time.perf_counter() - t0) / len(raw), 2)
    speed = np.abs(np.diff(script.site_displacement, axis=1)).sum(0)
    ref = site_diffs(stabilised(raw, script)).sum(1)[1:]
    fig["micro_r_raw"] = round(float(np.corrcoef(ref, speed)[0, 1]), 3)
    for fourcc, ext in (("MJPG", ".avi"), ("mp4v", ".mp4")):
        path = Path(tmp.name) / f"codec{ext}"
        size = encode(raw, path, fourcc)
        m = site_diffs(stabilised(decode(path), script)).sum(1)[1:]
        fig[f"micro_r_{fourcc}"] = round(float(np.corrcoef(m, speed)[0, 1]), 3)
        fig[f"micro_r_{fourcc}_vs_raw"] = round(float(np.corrcoef(m, ref)[0, 1]), 3)
        fig[f"kB_per_frame_{fourcc}"] = round(size / len(raw) / 1e3, 1)

    # Valence cue: +1/-1 alternating every 5 frames, no micro-motions.
    s = demo_script(2, 60)
    sign = np.where((np.arange(60) // 5) % 2 == 0, 1.0, -1.0)
    s = dataclasses.replace(s, valence_latent=sign, events=s.events[:0])
    bg = background(s.seed)
    path = Path(tmp.name) / "valence.avi"
    encode([render_frame(s, t, bg) for t in range(60)], path, "MJPG")
    mouth = (slice(None), slice(125 - PATCH_Y0, 165 - PATCH_Y0), slice(190 - PATCH_X0, 260 - PATCH_X0))
    st = np.stack([stabilise(f, s, t) for t, f in enumerate(decode(path))])[mouth]
    pos, neg = st[sign > 0], st[sign < 0]
    fig["valence_mouth_signal"] = round(float(np.abs(pos.mean(0) - neg.mean(0)).mean()), 2)
    fig["valence_mouth_noise"] = round(float(np.abs(pos[0::2].mean(0) - pos[1::2].mean(0)).mean()), 2)

    # Learnability proxies: train on the train split, score on the test split.
    data = {"train": [], "test": []}
    for row in summary["videos"]:
        sc = demo_script(row["seed"], row["frames"])
        y = np.column_stack([read_labels(Path(row["arousal"])), read_labels(Path(row["valence"]))])
        data[row["split"]].append((features(Path(row["video"]), sc), y))
    ytr = np.concatenate([y for _, y in data["train"]])
    yte = np.concatenate([y for _, y in data["test"]])
    for kind in ("appearance", "motion"):
        xtr = np.concatenate([f[kind] for f, _ in data["train"]])
        xte = np.concatenate([f[kind] for f, _ in data["test"]])
        pred = ridge(xtr, ytr, xte, lam=1.0 if kind == "appearance" else 0.01)
        fig[f"ccc_{kind}_arousal"] = round(ccc(pred[:, 0], yte[:, 0]), 3)
        fig[f"ccc_{kind}_valence"] = round(ccc(pred[:, 1], yte[:, 1]), 3)

    # ΔPhase proxy on the held-out videos: per-frame energy vs true speed, and smoothed vs the arousal energy.
    from scipy.ndimage import gaussian_filter1d

    from pipeline.demo_script import AROUSAL_SIGMA, micro_speed_sq

    r_speed, r_label = [], []
    for row in (r for r in summary["videos"] if r["split"] == "test"):
        sc = demo_script(row["seed"], row["frames"])
        e = dphase_energy([stabilise(f, sc, t) for t, f in enumerate(decode(Path(row["video"])))])
        speed = np.r_[0.0, np.abs(np.diff(sc.site_displacement, axis=1)).sum(0)]
        target = np.sqrt(gaussian_filter1d(micro_speed_sq(sc.events, sc.n_frames), AROUSAL_SIGMA))
        r_speed.append(np.corrcoef(e, speed)[0, 1])
        r_label.append(np.corrcoef(gaussian_filter1d(e, AROUSAL_SIGMA), target)[0, 1])
    fig["dphase_r_speed"] = round(float(np.mean(r_speed)), 3)
    fig["dphase_r_arousal_energy"] = round(float(np.mean(r_label)), 3)
    fig["cpu_count"] = os.cpu_count()
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
