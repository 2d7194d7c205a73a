"""Render a DemoScript into frames: the astronaut's face, locally warped, placed on a textured background.

One interpolation per frame: the local warps (micro-motions and the valence cue) are a displacement
field on the source image's grid; that backward map is carried into the frame by the head's similarity
transform (``cv2.warpAffine`` of the map itself) and the photo is sampled once with ``cv2.remap``.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import cv2
import numpy as np

from pipeline.demo_script import SITES, DemoScript, background_rng

WIDTH, HEIGHT = 640, 360
BASE_SCALE = 1.45  # frame px per photo px: brows-to-chin ~130 px, forehead-to-chin ~165 px

# 68 iBUG landmarks of skimage.data.astronaut() (512x512 RGB), photo pixel coordinates. Obtained once with
# dlib.get_frontal_face_detector()(img, 1)[0] -> rect (175, 76)-(265, 166), then
# dlib.shape_predictor(<face_recognition_models>/models/shape_predictor_68_face_landmarks.dat);
# hard-coded so that generating the demo needs no detector.
ASTRONAUT_LANDMARKS = np.array([
    [179, 104], [180, 116], [181, 127], [182, 139], [185, 150], [191, 160], [200, 168], [209, 176],
    [220, 178], [232, 177], [243, 171], [253, 163], [260, 154], [265, 143], [268, 131], [270, 120],
    [272, 108], [186, 94], [192, 88], [200, 87], [208, 89], [216, 92], [236, 93], [244, 91], [252, 91],
    [260, 92], [265, 99], [226, 102], [225, 111], [225, 119], [225, 127], [214, 131], [219, 133],
    [224, 134], [229, 133], [234, 132], [195, 101], [200, 98], [207, 98], [212, 104], [206, 104],
    [199, 104], [237, 106], [243, 100], [250, 100], [255, 105], [250, 107], [244, 107], [201, 139],
    [209, 139], [218, 139], [224, 141], [230, 140], [238, 140], [246, 141], [238, 151], [229, 155],
    [222, 156], [216, 155], [208, 150], [204, 141], [218, 143], [223, 144], [230, 143], [243, 142],
    [229, 150], [223, 151], [217, 150]], dtype=np.float64)
_L = ASTRONAUT_LANDMARKS

# The face centre (photo px) goes to the frame centre. The photo is cut out by a soft ellipse holding hair,
# face, neck and collar, large enough that an aligned face crop sees no backdrop sliding behind the head.
FACE_CENTER = np.array([226.0, 110.0])
HEAD_CENTER = np.array([226.0, 140.0])
HEAD_AXES = (96.0, 138.0)
PATCH_X0, PATCH_Y0, PATCH_W, PATCH_H = 126, 0, 200, 282  # photo region holding the ellipse

# Micro-motion sites, in SITES order: centre (photo px), Gaussian window (sx, sy) (photo px), unit direction.
SITE_GEOMETRY = {
    "brow_left": (_L[17:22].mean(0), (9.0, 5.0), (0.0, -1.0)),   # raise
    "brow_right": (_L[22:27].mean(0), (9.0, 5.0), (0.0, -1.0)),
    "lid_left": (_L[37:39].mean(0), (6.0, 3.0), (0.0, 1.0)),     # upper lid lowers
    "lid_right": (_L[43:45].mean(0), (6.0, 3.0), (0.0, 1.0)),
    "mouth_left": (_L[48], (5.0, 5.0), (-0.6, -0.8)),            # corner out and up
    "mouth_right": (_L[54], (5.0, 5.0), (0.6, -0.8)),
    "lip_lower": (_L[57], (7.0, 4.0), (0.0, 1.0)),
    "nose": (np.array([225.0, 116.0]), (6.0, 5.0), (0.0, -1.0)),  # wrinkle up
}
assert tuple(SITE_GEOMETRY) == SITES

# Valence cue at valence +1 (frame px; -1 mirrors it): mouth corners up/out (smile) or down/in (frown),
# cheeks raised, brows raised, or lowered and drawn together; plus a warm cheek tint.
# The geometric part is kept moderate because its transitions move pixels, which the temporal stream would
# see; the shading part (blush at +1, shadow at -1) changes no phase, so it can be strong.
VALENCE_WARPS = (
    (_L[48], (7.0, 6.0), (-1.5, -4.5)),
    (_L[54], (7.0, 6.0), (1.5, -4.5)),
    (_L[57], (8.0, 4.0), (0.0, 1.5)),
    (np.array([203.0, 122.0]), (9.0, 7.0), (0.0, -2.0)),
    (np.array([247.0, 124.0]), (9.0, 7.0), (0.0, -2.0)),
    (_L[17:22].mean(0), (10.0, 6.0), (-1.0, -2.0)),
    (_L[22:27].mean(0), (10.0, 6.0), (1.0, -2.0)),
)
CHEEK_TINT = ((np.array([200.0, 128.0]), 12.0), (np.array([250.0, 130.0]), 12.0))
TINT_POS = np.array([26.0, -2.0, -12.0], np.float32)  # rosy cheeks at valence +1
TINT_NEG = np.array([-16.0, -16.0, -12.0], np.float32)  # shadowed cheeks at valence -1


def _gauss(cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    x = np.arange(PATCH_W) + PATCH_X0
    y = np.arange(PATCH_H) + PATCH_Y0
    return np.exp(-0.5 * (((x[None, :] - cx) / sx) ** 2 + ((y[:, None] - cy) / sy) ** 2))


@lru_cache(maxsize=1)
def _assets() -> dict[str, np.ndarray]:
    """Photo, basis displacement fields and masks on the patch grid, built once per process."""
    from skimage import data

    photo = data.astronaut().astype(np.float32)
    basis = np.zeros((len(SITES) + 1, 2, PATCH_H, PATCH_W), np.float32)
    for k, name in enumerate(SITES):  # unit amplitude in frame px, expressed in photo px
        (cx, cy), (sx, sy), (ux, uy) = SITE_GEOMETRY[name]
        w = _gauss(cx, cy, sx, sy) / BASE_SCALE
        basis[k, 0], basis[k, 1] = ux * w, uy * w
    for (cx, cy), (sx, sy), (dx, dy) in VALENCE_WARPS:
        w = _gauss(cx, cy, sx, sy) / BASE_SCALE
        basis[-1, 0] += dx * w
        basis[-1, 1] += dy * w
    tint = sum(_gauss(cx, cy, s, s * 0.8) for (cx, cy), s in CHEEK_TINT)  # the alpha mask stays separate
    gx, gy = np.meshgrid(np.arange(PATCH_W, dtype=np.float32) + PATCH_X0,
                         np.arange(PATCH_H, dtype=np.float32) + PATCH_Y0)
    r = np.hypot((gx - HEAD_CENTER[0]) / HEAD_AXES[0], (gy - HEAD_CENTER[1]) / HEAD_AXES[1])
    alpha = np.clip((1.0 - r) / 0.12, 0.0, 1.0).astype(np.float32)  # soft edge ~10 px
    return {"photo": photo, "basis": basis, "tint": tint.astype(np.float32),
            "gx": gx, "gy": gy, "alpha": alpha}


def background(seed: int) -> np.ndarray:
    """A static textured backdrop (float32 RGB): smooth colour blobs, a few soft panels, fine grain."""
    rng = background_rng(seed)
    base = (rng.uniform(80, 170) + rng.uniform(-20, 20, 3)).astype(np.float32)
    low = cv2.GaussianBlur(rng.normal(0, 1, (HEIGHT, WIDTH, 4)).astype(np.float32), (0, 0), 40)
    low /= low.std()
    img = base + low[..., :1] * 25.0 + low[..., 1:] * 6.0  # mostly shading, a little colour
    for _ in range(int(rng.integers(3, 7))):  # soft panels, like furniture or posters
        x0, y0 = int(rng.integers(0, WIDTH - 60)), int(rng.integers(0, HEIGHT - 60))
        w, h = int(rng.integers(40, 200)), int(rng.integers(40, 160))
        panel = np.zeros((HEIGHT, WIDTH, 1), np.float32)
        panel[y0:y0 + h, x0:x0 + w] = 1.0
        img += cv2.GaussianBlur(panel, (0, 0), 2.0)[..., None] * rng.uniform(-45, 45, 3).astype(np.float32)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 1.5)
    img += (grain / grain.std() * 6.0)[..., None]
    return np.clip(img, 0, 255).astype(np.float32)


def head_matrix(pose: np.ndarray) -> np.ndarray:
    """2x3 similarity transform taking photo coordinates to frame coordinates for one head pose row."""
    angle, scale, tx, ty = (float(v) for v in pose)
    m = cv2.getRotationMatrix2D((float(FACE_CENTER[0]), float(FACE_CENTER[1])), angle, BASE_SCALE * scale)
    m[:, 2] += np.array([WIDTH / 2 + tx, HEIGHT / 2 + ty]) - FACE_CENTER
    return m


def _patch_matrix(pose: np.ndarray) -> np.ndarray:
    m = head_matrix(pose).copy()
    m[:, 2] += m[:, :2] @ np.array([PATCH_X0, PATCH_Y0], np.float64)  # patch index -> photo coords first
    return m


def lighting(light_row: np.ndarray) -> np.ndarray:
    """Per-pixel gain map [H, W, 1] for one lighting row (gain, horizontal and vertical gradient)."""
    gain, gx, gy = (float(v) for v in light_row)
    x = (np.arange(WIDTH, dtype=np.float32) - WIDTH / 2) / WIDTH
    y = (np.arange(HEIGHT, dtype=np.float32) - HEIGHT / 2) / HEIGHT
    return (gain * (1.0 + gx * x[None, :] + gy * y[:, None]))[..., None].astype(np.float32)


def _roi(m: np.ndarray) -> tuple[int, int, int, int]:
    """Frame box (x0, y0, x1, y1) holding the warped patch, so the per-pixel work skips the backdrop."""
    corners = np.array([[0, 0, 1], [PATCH_W, 0, 1], [0, PATCH_H, 1], [PATCH_W, PATCH_H, 1]], np.float64)
    xy = corners @ m.T
    x0, y0 = np.floor(xy.min(0)).astype(int) - 2
    x1, y1 = np.ceil(xy.max(0)).astype(int) + 2
    return max(x0, 0), max(y0, 0), min(x1, WIDTH), min(y1, HEIGHT)


def render_frame(script: DemoScript, t: int, backdrop: np.ndarray, coef: np.ndarray | None = None) -> np.ndarray:
    """Frame t of the script as uint8 RGB [HEIGHT, WIDTH, 3]; coef overrides the per-site displacements."""
    a = _assets()
    if coef is None:
        coef = np.append(script.site_displacement[:, t], script.valence_latent[t])
    d = np.zeros((2, PATCH_H, PATCH_W), np.float32)
    for k in np.flatnonzero(coef):  # most sites are still in most frames
        d += np.float32(coef[k]) * a["basis"][k]
    m = _patch_matrix(script.head[t])
    x0, y0, x1, y1 = _roi(m)
    m[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    warp = {"dsize": size, "flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_REPLICATE}
    mapx = cv2.warpAffine(a["gx"] - d[0], m, **warp)
    mapy = cv2.warpAffine(a["gy"] - d[1], m, **warp)
    zero = {"dsize": size, "flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_CONSTANT, "borderValue": 0}
    alpha = cv2.warpAffine(a["alpha"], m, **zero)[..., None]
    face = cv2.remap(a["photo"], mapx, mapy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    v = float(coef[-1])
    if v != 0.0:
        face += cv2.warpAffine(a["tint"], m, **zero)[..., None] * (abs(v) * (TINT_POS if v > 0 else TINT_NEG))
    img = backdrop.copy()
    box = img[y0:y1, x0:x1]
    box += alpha * (face - box)
    img *= lighting(script.light[t])
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_frames(script: DemoScript) -> Iterator[np.ndarray]:
    """All frames of a script in order, uint8 RGB, rendered lazily (one frame in memory at a time)."""
    backdrop = background(script.seed)
    disp = script.site_displacement
    for t in range(script.n_frames):
        yield render_frame(script, t, backdrop, np.append(disp[:, t], script.valence_latent[t]))


def stabilise(frame: np.ndarray, script: DemoScript, t: int) -> np.ndarray:
    """Undo frame t's known head pose and lighting: gray float32 [PATCH_H, PATCH_W] on the photo's grid."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / lighting(script.light[t])[..., 0]
    return cv2.warpAffine(gray, _patch_matrix(script.head[t]), (PATCH_W, PATCH_H),
                          flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)


def site_box(name: str) -> tuple[slice, slice]:
    """Rows and columns of the patch grid within two Gaussian widths of a micro-motion site."""
    (cx, cy), (sx, sy), _ = SITE_GEOMETRY[name]
    return (slice(int(cy - 2 * sy) - PATCH_Y0, int(cy + 2 * sy) - PATCH_Y0),
            slice(int(cx - 2 * sx) - PATCH_X0, int(cx + 2 * sx) - PATCH_X0))


def frame_landmarks(pose: np.ndarray) -> np.ndarray:
    """Where the photo's 68 landmarks land in the frame for a head pose row (before local warps): [68, 2]."""
    m = head_matrix(pose)
    return ASTRONAUT_LANDMARKS @ m[:, :2].T + m[:, 2]
