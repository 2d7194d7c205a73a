"""Write CSVs in OpenFace 2's real FeatureExtraction / FaceLandmarkVidMulti format, from landmarks we computed.

Every column of `FeatureExtraction -2Dfp -3Dfp -pdmparams -pose -aus -gaze` in OpenFace's order and precision
(RecorderCSV): frame, face_id, timestamp (3 decimals), confidence (2), success (0/1), gaze (6 and 3), eye landmarks
(56 points, 2D then 3D, 1 decimal), pose (1 and 3), x_0..x_67, y_0..y_67 (1 decimal), X/Y/Z (1), p_scale.. and
p_0..p_33 (3), AU intensities (2) and occurrences (1). `version="2.0"` writes OpenFace 2.0's ", " separators
(a leading space before every name and value), "2.2" plain commas. Columns a reader could mistake for the 2D
landmarks (eye_lmk_x_*, X_*) hold other values, so a reader that picks them is caught.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

AU_REG = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20",
          "AU23", "AU25", "AU26", "AU45"]
AU_CLASS = sorted([*AU_REG, "AU28"])
N_EYE = 56
N_MODES = 34


def header() -> list[str]:
    """OpenFace 2's column names for a video with every output on."""
    cols = ["frame", "face_id", "timestamp", "confidence", "success",
            "gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
    for axis in ("x", "y", "X", "Y", "Z"):
        cols += [f"eye_lmk_{axis}_{i}" for i in range(N_EYE)]
    cols += ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    for axis in ("x", "y", "X", "Y", "Z"):
        cols += [f"{axis}_{i}" for i in range(68)]
    cols += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(N_MODES)]
    return cols + [f"{a}_r" for a in AU_REG] + [f"{a}_c" for a in AU_CLASS]


def _row(frame: int, face_id: int, fps: float, lm: np.ndarray, ok: bool, rng: np.random.Generator) -> list[str]:
    f1, f2, f3, f6 = ("{:.1f}".format, "{:.2f}".format, "{:.3f}".format, "{:.6f}".format)
    out = [str(frame), str(face_id), f3((frame - 1) / fps), f2(0.98 if ok else 0.03), "1" if ok else "0"]
    out += [f6(v) for v in rng.normal(0, 0.3, 6)] + [f3(v) for v in rng.normal(0, 0.2, 2)]
    eyes = np.concatenate([lm[36:48]] * 5)[:N_EYE] + 3.0  # near the eyes, never equal to x_/y_
    out += [f1(v) for v in eyes[:, 0]] + [f1(v) for v in eyes[:, 1]]
    out += [f1(v) for v in rng.normal(0, 20, 3 * N_EYE)]
    out += [f1(v) for v in (12.0, -5.0, 480.0)] + [f3(v) for v in rng.normal(0, 0.1, 3)]
    out += [f1(v) for v in lm[:, 0]] + [f1(v) for v in lm[:, 1]]
    out += [f1(v) for v in np.concatenate([lm[:, 0] - 300, lm[:, 1] - 200, 500 + lm[:, 0] * 0])]
    out += [f3(v) for v in rng.normal(0, 1, 6 + N_MODES)]
    out += [f2(v) for v in rng.uniform(0, 2, len(AU_REG))] + [f1(v) for v in rng.integers(0, 2, len(AU_CLASS))]
    return out


def write_openface_csv(path: str | Path, faces: list[tuple[np.ndarray, np.ndarray]], fps: float = 30.0,
                       version: str = "2.0", n_frames: int | None = None, shuffle_ids: bool = False,
                       seed: int = 0) -> None:
    """Write one row per face per frame: `faces` = [(landmarks [T, 68, 2], success [T]), ...], one per person.

    One face: FeatureExtraction (a row for every frame, success 0 with stale landmarks where it failed).
    Several: FaceLandmarkVidMulti (rows only where a face was found; `shuffle_ids` shuffles rows and ids within a
    frame, so neither carries identity, as with OpenFace's re-detections). `n_frames` cuts or pads (with failed rows) to that many frames.
    """
    rng = np.random.default_rng(seed)
    sep = ", " if version == "2.0" else ","
    total = n_frames if n_frames is not None else len(faces[0][0])
    lines = [sep.join(header())]
    stale = [np.zeros((68, 2)) for _ in faces]
    for t in range(total):
        found = []
        for k, (lm, ok) in enumerate(faces):
            good = t < len(ok) and bool(ok[t]) and np.isfinite(lm[t]).all()
            if good:
                stale[k] = np.asarray(lm[t], float)
            if good or len(faces) == 1:
                # a failed fit keeps OpenFace's last shape, shifted: its landmarks must never be used
                found.append((stale[k] if good else stale[k] + 7.0, good))
        order = rng.permutation(len(found)) if shuffle_ids else range(len(found))
        for face_id, k in enumerate(order):  # shuffled: neither row order nor id says who is who
            lines.append(sep.join(_row(t + 1, face_id, fps, *found[k], rng)))
    Path(path).write_text("\n".join(lines) + "\n")
