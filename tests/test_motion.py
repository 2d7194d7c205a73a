"""ΔPhase measures sub-pixel motion as the paper says, ignores illumination, and chunks exactly."""
import math
import threading

import cv2
import numpy as np
import pytest
import torch
from synth_video import astronaut

from features.errors import BadInputError
from features.motion import (
    MOTION_V1,
    MOTION_VERSION,
    MotionConfig,
    delta_phase,
    face_bands,
    gamma_jitter,
    mirror_faces,
    optical_flow,
    phase,
)
from features.pyramid import ComplexSteerablePyramid

N = 48


def texture(seed, lo=0.04, hi=0.45):
    """Spectrum of band-limited noise (cycles/pixel in [lo, hi]); rendered with a Fourier shift."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(N)
    r = np.hypot(*np.meshgrid(f, f))
    return np.fft.fft2(rng.standard_normal((N, N))) * ((r >= lo) & (r <= hi))


def render(spec, dx=0.0, dy=0.0):
    fx, fy = np.meshgrid(np.fft.fftfreq(N), np.fft.fftfreq(N))
    img = np.fft.ifft2(spec * np.exp(-2j * np.pi * (fx * dx + fy * dy))).real
    return img / img.std()


def window(sigma=8.0):
    y, x = np.mgrid[:N, :N] - (N - 1) / 2
    return np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))


def face_clip(t, seed=0, local=0.8, drift=0.15):
    """The astronaut's face at 48x48, drifting sub-pixel (random walk) with a patch below its centre moving
    sinusoidally along x (a mouth-like local motion), uint8."""
    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY).astype(np.float32)
    face = cv2.GaussianBlur(gray[40:220, 150:330], (0, 0), 180 / 96)  # 180x180 face, low-passed before sampling
    rng = np.random.default_rng(seed)
    d = np.cumsum(rng.normal(0, drift, (t, 2)), axis=0)
    y, x = np.mgrid[:N, :N].astype(np.float32)
    win = np.exp(-((x - 24) ** 2 + (y - 36) ** 2) / (2 * 5.0 ** 2))
    s = 180 / N
    out = np.empty((t, N, N), np.uint8)
    for i in range(t):
        mx = ((x + d[i, 0] + local * np.sin(i / 3.0) * win) * s + s / 2 - 0.5).astype(np.float32)
        my = ((y + d[i, 1]) * s + s / 2 - 0.5).astype(np.float32)
        out[i] = np.clip(np.rint(cv2.remap(face, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)), 0, 255)
    return out


W = window()
CENTER, RING = W > 0.8, W < 0.05


def patch_pair(d, axis, seed):
    """Two frames: the central patch (Gaussian window) of a texture moves by d pixels along axis (0 = x)."""
    spec = texture(seed)
    still = render(spec)
    moved = render(spec, *((d, 0.0) if axis == 0 else (0.0, d)))
    return np.stack([128 + 35 * still, 128 + 35 * (W * moved + (1 - W) * still)])


def patch_motion(d, axis=0, seed=0, config=MotionConfig()):
    """Centre-minus-background ΔPhase of the moving patch, [scale, orientation]."""
    dp = delta_phase(patch_pair(d, axis, seed), batch_size=16, config=config)
    out = np.zeros((2, 2))
    for s in range(2):
        c, r = CENTER[::1 << s, ::1 << s], RING[::1 << s, ::1 << s]
        for o in range(2):
            m = dp[f"s{s}"][1, o]
            out[s, o] = m[c].mean() - m[r].mean()
    return out


def largest_faithful_motion(scale, tol=0.15, config=MotionConfig(**MOTION_V1)):
    """Largest displacement (pixels) up to which ΔPhase, calibrated at 0.05 px, reads it within tol.

    With the paper's settings: the pyramid's reach, not the rigid-motion fit's (a patch moving by pixels over a
    fifth of the face is what the default's robust fit is allowed to take for the head's own motion).
    """
    slope = patch_motion(0.05, config=config)[scale, 0] / 0.05
    limit = 0.0
    for d in np.arange(0.25, 6.01, 0.25):
        if abs(patch_motion(d, config=config)[scale, 0] / slope - d) > tol * d:
            break
        limit = d
    return limit


def test_shapes_dtype_and_row_zero():
    faces = np.random.default_rng(0).integers(0, 256, (5, N, N), dtype=np.uint8)
    for fn in (delta_phase, phase):
        out = fn(faces)
        assert set(out) == {"s0", "s1"}
        assert out["s0"].shape == (5, 2, 48, 48) and out["s1"].shape == (5, 2, 24, 24)
        assert out["s0"].dtype == np.float32
    dp = delta_phase(torch.from_numpy(faces))
    assert not dp["s0"][0].any() and not dp["s1"][0].any()
    assert dp["s0"][1:].any()
    flow = optical_flow(faces)["flow"]
    assert flow.shape == (5, 2, 48, 48) and flow.dtype == np.float32 and not flow[0].any()


def test_delta_phase_is_proportional_to_displacement_and_signed():
    small, double, back = patch_motion(0.1), patch_motion(0.2), patch_motion(-0.1)
    for s in range(2):
        assert small[s, 0] < 0  # ΔPhase ~ -omega . d: rightward motion reads negative
        assert double[s, 0] / small[s, 0] == pytest.approx(2.0, rel=0.05)
        assert back[s, 0] / small[s, 0] == pytest.approx(-1.0, rel=0.05)


def test_motion_lands_in_the_matching_orientation():
    horiz = np.mean([np.abs(patch_motion(0.1, 0, seed)) for seed in range(3)], axis=0)
    vert = np.mean([np.abs(patch_motion(0.1, 1, seed)) for seed in range(3)], axis=0)
    for s in range(2):
        assert horiz[s, 1] < 0.3 * horiz[s, 0]
        assert vert[s, 0] < 0.3 * vert[s, 1]


def test_coarse_scale_represents_larger_motion():
    # measured: ~1 px at scale 0 (bands reach the Nyquist frequency), ~3 px at scale 1
    lim0, lim1 = largest_faithful_motion(0), largest_faithful_motion(1)
    assert lim0 >= 0.75
    assert lim1 >= 2.5
    assert lim1 >= 2 * lim0


def test_global_translation_is_mostly_removed():
    spec = texture(3)
    seq = np.stack([128 + 35 * render(spec, 0.3 * t, 0.0) for t in range(4)])
    on = delta_phase(seq, config=MotionConfig(**MOTION_V1))
    off = delta_phase(seq, config=MotionConfig(**{**MOTION_V1, "rigid": "none"}))
    new, none = delta_phase(seq), delta_phase(seq, config=MotionConfig(rigid="none"))
    for s in ("s0", "s1"):
        residual = np.sqrt((on[s][1:] ** 2).mean() / (off[s][1:] ** 2).mean())
        assert residual < 0.35  # the paper's mean subtraction: measured ~0.21 at both scales
        assert np.sqrt((new[s][1:] ** 2).mean() / (none[s][1:] ** 2).mean()) < 0.1 * residual  # affine fit


def test_local_mean_window_is_a_real_option():
    faces = np.stack([128 + 35 * render(texture(4), 0.4 * t, 0.0) for t in range(3)])
    whole = delta_phase(faces, config=MotionConfig(**MOTION_V1))
    local = delta_phase(faces, config=MotionConfig(**{**MOTION_V1, "mean_window": 9}))
    assert not np.allclose(whole["s0"], local["s0"])
    assert abs(local["s0"][1:].mean()) < 1e-2 and abs(local["s1"][1:].mean()) < 1e-2


def test_brightness_and_contrast_leave_delta_phase_unchanged_but_not_flow():
    spec = texture(5)
    seq = np.stack([128 + 30 * render(spec, 0.3 * t, 0.1 * t) for t in range(5)])
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.6, 1.4, (5, 1, 1)), rng.uniform(-30, 30, (5, 1, 1))
    lit = a * seq + b
    for dtype, tol in ((torch.float64, 1e-6), (torch.float32, 1e-4)):
        x, y = delta_phase(seq, dtype=dtype), delta_phase(lit, dtype=dtype)
        for k in x:
            assert np.abs(x[k] - y[k]).max() <= tol * math.pi
    f1, f2 = optical_flow(seq)["flow"], optical_flow(lit)["flow"]
    assert np.abs(f1 - f2).mean() > 0.02 * np.abs(f1).mean()  # measured ~0.05-0.1


def test_chunked_equals_whole_video_exactly():
    faces = np.random.default_rng(1).integers(0, 256, (45, N, N), dtype=np.uint8)
    valid = np.ones(45, bool)
    valid[[15, 30]] = False
    whole = delta_phase(faces, valid, batch_size=16)
    # chunks start at multiples of the batch, as the pipeline's blocks do (delta_phase's docstring says why)
    parts = [delta_phase(faces[:16], valid[:16], batch_size=16),
             delta_phase(faces[16:32], valid[16:32], previous=None, batch_size=16),  # frame 15 is invalid
             delta_phase(faces[32:], valid[32:], previous=faces[31], batch_size=16)]
    for k in whole:
        assert np.array_equal(whole[k], np.concatenate([p[k] for p in parts]))
    other = delta_phase(faces, valid, batch_size=32)  # another batch size: equal to rounding
    assert all(np.abs(other[k] - whole[k]).max() < 1e-5 for k in whole)
    flows = [optical_flow(faces[:10]), optical_flow(faces[10:], previous=faces[9])]
    assert np.array_equal(optical_flow(faces)["flow"], np.concatenate([f["flow"] for f in flows]))


def test_rows_touching_invalid_frames_are_zero():
    faces = np.random.default_rng(2).integers(0, 256, (6, N, N), dtype=np.uint8)
    valid = np.array([1, 1, 0, 1, 1, 1], bool)
    dp, ph = delta_phase(faces, valid), phase(faces, valid)
    flow = optical_flow(faces, valid)["flow"]
    for row in (0, 2, 3):
        assert not dp["s0"][row].any() and not dp["s1"][row].any() and not flow[row].any()
    assert (np.abs(dp["s0"][[1, 4, 5]]).mean(axis=(1, 2, 3)) > 0).all()
    assert not ph["s0"][2].any() and ph["s0"][3].any()


def test_flat_frames_give_zero_not_nan():
    dp = delta_phase(np.full((3, N, N), 7, np.uint8))
    # the bands are rounding noise of arbitrary phase, but weighted by ~0 amplitude
    assert np.isfinite(dp["s0"]).all() and np.abs(dp["s0"]).max() < 1e-3


def test_delta_phase_matches_the_pyramid_phase_difference():
    """Without blur, mean removal or clamp, ΔPhase is exactly the wrapped difference of band phases."""
    faces = np.stack([128 + 35 * render(texture(6), 0.5 * t, -0.3 * t) for t in range(3)])
    raw = delta_phase(faces, config=MotionConfig(taps=1, rigid="none", window=None), dtype=torch.float64)
    ext = np.block([[faces, faces[:, :, ::-1]], [faces[:, ::-1, :], faces[:, ::-1, ::-1]]])
    bands = ComplexSteerablePyramid((96, 96))(torch.from_numpy(ext))
    ph = torch.angle(bands[0][:, :, :N, :N]).numpy()
    want = np.angle(np.exp(1j * (ph[1:] - ph[:-1])))
    assert np.abs(raw["s0"][1:] - want).max() < 1e-5
    # the fast face path agrees with the general pyramid on the extended image
    fb = face_bands(torch.from_numpy(faces))
    assert torch.allclose(fb[1], bands[1][:, :, :24, :24], atol=1e-8 * float(bands[1].abs().max()))


def test_phase_is_in_range_and_illumination_invariant():
    faces = np.stack([128 + 35 * render(texture(7), 0.2 * t, 0.0) for t in range(3)])
    p1, p2 = phase(faces, dtype=torch.float64), phase(0.7 * faces + 20, dtype=torch.float64)
    assert np.abs(p1["s0"]).max() <= math.pi + 1e-6
    assert np.abs(p1["s0"] - p2["s0"]).max() < 1e-5


def test_config_fingerprint_and_validation():
    d = MotionConfig().as_dict()
    assert d["sigma"] == 3.0 and d["taps"] == 15 and d["clamp"] == pytest.approx(5 * math.pi)
    assert d["rigid"] == "affine" and d["amplitude"] == "product" and d["window"] is not None
    assert d["version"] == MOTION_VERSION
    v1 = MotionConfig(**MOTION_V1).as_dict()  # the released code's settings, the defaults before issue 17
    assert (v1["sigma"], v1["taps"], v1["rigid"], v1["amplitude"], v1["window"]) == (2.0, 11, "mean", "geometric", None)
    assert MotionConfig(mean_window=7).rigid == "mean"  # a box mean implies the mean subtraction
    assert MotionConfig(mean_window=7).as_dict() != d
    with pytest.raises(ValueError, match="mean_window"):
        MotionConfig(rigid="affine", mean_window=7)  # a box mean belongs to rigid="mean"
    assert d["variant"] == "mimamo" and MotionConfig(variant="paper").as_dict() != d
    with pytest.raises(ValueError):
        MotionConfig(taps=10)
    with pytest.raises(ValueError, match="variant"):
        MotionConfig(variant="released")
    with pytest.raises(ValueError, match="amplitude"):
        MotionConfig(variant="paper", amplitude="geometric")
    # the paper variant's unset settings are the paper's; the affine fit and the face window are refused there
    paper = MotionConfig(variant="paper")
    assert (paper.sigma, paper.taps, paper.rigid, paper.window, paper.amplitude) == (2.0, 11, "mean", None, "current")
    with pytest.raises(ValueError, match="rigid='affine'"):
        MotionConfig(variant="paper", rigid="affine")
    with pytest.raises(ValueError, match="window"):
        MotionConfig(variant="paper", window=(0.5, 0.5, 0.4, 0.4))
    assert MotionConfig(variant="paper", rigid="none", mean_window=None).rigid == "none"
    # switching the variant keeps what was set and takes the new variant's defaults for the rest
    assert MotionConfig().with_variant("paper") == paper and paper.with_variant("mimamo") == MotionConfig()
    assert MotionConfig(sigma=4.0).with_variant("paper") == MotionConfig(variant="paper", sigma=4.0)
    assert MotionConfig(sigma=4.0).taps == 21 and MotionConfig(**{"sigma": 3, "window": [0.5, 0.54, 0.42, 0.47]}) \
        == MotionConfig()   # JSON's int and list give the same settings (and fingerprint)
    with pytest.raises(BadInputError):
        delta_phase(np.zeros((4, 47, 48)))
    with pytest.raises(BadInputError):
        delta_phase(np.zeros((4, 48, 48)), valid=np.ones(3, bool))


def test_gamma_jitter_is_seeded_per_frame_gamma():
    frames = np.random.default_rng(3).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    out = gamma_jitter(frames, 0.5, np.random.default_rng(11))
    assert out.dtype == np.uint8 and out.shape == frames.shape
    assert np.array_equal(out, gamma_jitter(frames, 0.5, np.random.default_rng(11)))
    g = np.random.default_rng(11).uniform(0.5, 1.5, 4)
    for t in range(4):
        want = np.rint(255 * (frames[t] / 255.0) ** g[t])
        assert np.abs(out[t].astype(int) - want).max() <= 1
    assert np.array_equal(gamma_jitter(frames, 0.0, np.random.default_rng(0)), frames)


def test_variant_keyword_overrides_the_config():
    faces = np.stack([128 + 35 * render(texture(8), 0.3 * t, 0.1 * t) for t in range(4)])
    default, paper = delta_phase(faces), delta_phase(faces, variant="paper")
    by_config = delta_phase(faces, config=MotionConfig(variant="paper"))
    back = delta_phase(faces, variant="mimamo", config=MotionConfig(variant="paper"))
    for k in default:
        assert np.array_equal(paper[k], by_config[k]) and np.array_equal(back[k], default[k])
        assert np.abs(paper[k] - default[k]).max() > 1e-3


def test_mirroring_faces_mirrors_delta_phase_exactly_at_scale_0_only():
    """Mirroring a face turns orientation 0's band into -conj of the mirrored band and keeps orientation 1.

    mimamo's ΔPhase then follows "mirror the maps, negate orientation 0" to rounding at 48x48 (measured ~3e-6
    of its RMS); at 24x24 the pyramid's factor-2 subsampling puts the mirrored samples half a pixel off the grid:
    the rule misses by ~13-21% RMS (measured on three face clips). The paper variant misses it even at 48x48 in
    orientation 0 (~60%): it unwraps from the first frame's wrapped phase, and pi - phi wraps at other pixels
    than phi. mimamo's default misses it too (measured ~17% and ~59% at 48x48, where little is left after the
    head's drift is taken out): its affine fit reads every other pixel, which mirroring moves to the pixels
    between. So a flipped video's motion arrays must be computed from its mirrored faces. The exact rule is
    measured with MOTION_V1, the maths that has it."""
    faces = face_clip(12)
    mirrored = mirror_faces(faces)
    assert np.array_equal(mirrored, faces[:, :, ::-1])
    assert torch.equal(mirror_faces(torch.from_numpy(faces)), torch.from_numpy(mirrored))

    def miss(config):
        """Relative RMS of (ΔPhase of mirrored faces) - (the rule on ΔPhase of faces), per [scale, orientation]."""
        dp, dm = delta_phase(faces, config=config), delta_phase(mirrored, config=config)
        out = np.zeros((2, 2))
        for s in range(2):
            rule = dp[f"s{s}"][1:, :, :, ::-1] * np.array([-1, 1])[:, None, None]
            err = dm[f"s{s}"][1:] - rule
            out[s] = np.sqrt((err ** 2).mean(axis=(0, 2, 3)) / (rule ** 2).mean(axis=(0, 2, 3)))
        return out

    mimamo, paper = miss(MotionConfig(**MOTION_V1)), miss(MotionConfig(variant="paper"))
    assert mimamo[0].max() < 1e-4  # measured 3e-6
    assert 0.08 < mimamo[1].min() and mimamo[1].max() < 0.35  # measured 0.17, 0.20
    assert paper[0, 1] < 1e-4 and paper[0, 0] > 0.2  # measured 2e-6 and 0.67


def test_concurrent_calls_in_threads_give_the_sequential_results():
    """Each thread has its own batch buffers (features.scratch): shared ones would mix the threads' batches."""
    inputs = [np.random.default_rng(10 + i).integers(0, 256, (40, N, N), dtype=np.uint8) for i in range(3)]
    variants = ["mimamo", "paper", "mimamo"]
    want = [delta_phase(x, variant=v, batch_size=16) for x, v in zip(inputs, variants)]
    got = [[] for _ in inputs]
    barrier = threading.Barrier(len(inputs))

    def work(i):
        barrier.wait()
        for _ in range(3):
            got[i].append(delta_phase(inputs[i], variant=variants[i], batch_size=16))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w, runs in zip(want, got):
        assert len(runs) == 3 and all(np.array_equal(r[k], w[k]) for r in runs for k in w)
