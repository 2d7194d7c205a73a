"""The paper's ΔPhase (variant "paper"): its steps in plain NumPy on pyrtools' bands, its unwrap restarts, and
chunked runs and resumed runs that equal a whole run bit for bit."""
import numpy as np
import pytest
import torch
from test_motion import face_clip, render, texture

from features.errors import BadInputError
from features.motion import MOTION_V1, MotionConfig, MotionState, delta_phase, motion_state

pt = pytest.importorskip("pyrtools")


# ---------------------------------------------------------------- the paper's steps in NumPy


def np_bands(faces):
    """pyrtools' bands of each mirror-extended face, cropped to the face: {(s, b): complex [T, H/2^s, W/2^s]}."""
    t, h, w = faces.shape
    out = {(s, b): np.zeros((t, h >> s, w >> s), complex) for s in range(2) for b in range(2)}
    for i, f in enumerate(np.asarray(faces, float)):
        ext = np.block([[f, f[:, ::-1]], [f[::-1, :], f[::-1, ::-1]]])
        pyr = pt.pyramids.SteerablePyramidFreq(ext, height=2, order=1, is_complex=True)
        for (s, b), m in out.items():
            m[i] = pyr.pyr_coeffs[(s, b)][:h >> s, :w >> s]
    return out


def np_blur(x, sigma=2.0, taps=11):
    """The released code's blur of maps [T, H, W]: a taps x taps Gaussian (unnormalised), zero padding."""
    g = np.exp(-np.arange(-(taps // 2), taps // 2 + 1) ** 2 / (2 * sigma ** 2))
    h = taps // 2
    p = np.pad(x, ((0, 0), (h, h), (0, 0)))
    x = sum(g[k] * p[:, k:k + x.shape[1]] for k in range(taps))
    p = np.pad(x, ((0, 0), (0, 0), (h, h)))
    return sum(g[k] * p[:, :, k:k + x.shape[2]] for k in range(taps))


def fmod_unwrap(p, axis=0):
    """The released code's ``torch_unwrap`` along axis 0 (np.fmod keeps the dividend's sign, as torch.fmod)."""
    dd = np.diff(p, axis=0)
    ddmod = np.fmod(dd + np.pi, 2 * np.pi) - np.pi
    ddmod[(ddmod == -np.pi) & (dd > 0)] = np.pi
    corr = ddmod - dd
    corr[np.abs(dd) < np.pi] = 0
    out = p.copy()
    out[1:] += np.cumsum(corr, axis=0)
    return out


def runs_of(valid):
    """[a, e) of each run of consecutive valid frames."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(int), [0]])))
    return list(zip(edges[::2], edges[1::2]))


def np_paper(faces, valid, unwrap=np.unwrap):
    """Per band: phase, unwrap over time within each run of valid frames, blur(A phi) / blur(A), difference,
    minus each map's mean, clamp to +-5 pi; rows touching an invalid frame (and row 0) are 0."""
    t, h, w = faces.shape
    out = {"s0": np.zeros((t, 2, h, w)), "s1": np.zeros((t, 2, h // 2, w // 2))}
    ok = valid.copy()
    ok[1:] &= valid[:-1]
    ok[0] = False
    for (s, b), c in np_bands(faces).items():
        phi, amp = np.angle(c), np.abs(c)
        for a, e in runs_of(valid):
            phi[a:e] = unwrap(phi[a:e], axis=0)
        psi = np_blur(amp * phi) / np_blur(amp)
        d = np.zeros_like(psi)
        d[1:] = psi[1:] - psi[:-1]
        d -= d.mean(axis=(1, 2), keepdims=True)
        out[f"s{s}"][:, b] = np.clip(d, -5 * np.pi, 5 * np.pi) * ok[:, None, None]
    return out


def drifting(t, dx=-0.45, dy=0.2, seed=0):
    """A texture moving steadily: leftwards (dx < 0) its orientation-0 phase increases through +pi every few frames."""
    spec = texture(seed)
    return np.stack([128 + 35 * render(spec, dx * i, dy * i) for i in range(t)])


# ---------------------------------------------------------------- tests


def test_paper_variant_equals_its_steps_in_numpy_on_pyrtools_bands():
    faces = drifting(16)
    valid = np.ones(16, bool)
    valid[[6, 7]] = False  # a gap: the unwrap restarts at frame 8
    want = np_paper(faces, valid)
    got64 = delta_phase(faces, valid, variant="paper", dtype=torch.float64)
    got32 = delta_phase(faces, valid, variant="paper")
    for k in want:
        assert np.abs(got64[k] - want[k]).max() < 1e-6  # measured ~2e-8
        assert np.abs(got32[k] - want[k]).max() < 1e-4  # measured ~1e-5
    assert not want["s0"][[0, 6, 7, 8]].any() and want["s0"][[1, 5, 9, 15]].all(axis=(1, 2, 3)).any()

    # the case exercises increasing phase, which the released fmod unwrap leaves wrapped
    phi = np.angle(np_bands(faces[:6])[(0, 0)])
    assert (np.diff(phi, axis=0) < -np.pi).mean() > 0.05  # +pi -> -pi steps: phase increasing through the wrap
    released = np_paper(faces, valid, unwrap=fmod_unwrap)
    assert np.abs(released["s0"][:, 0] - want["s0"][:, 0]).max() > 1.0

    # after the gap, rows are those of a fresh start at its first valid frame, not of an unwrap across it
    fresh = np_paper(faces[8:], valid[8:])
    across = np_paper(faces, np.ones(16, bool))
    for k in want:
        assert np.abs(got64[k][9:] - fresh[k][1:]).max() < 1e-6
        assert np.abs(across[k][9:] - fresh[k][1:]).max() > 0.1


def test_paper_variant_chunked_and_resumed_runs_equal_a_whole_run():
    faces = drifting(70, dx=-0.6, dy=0.35, seed=1).astype(np.float32)
    valid = np.ones(70, bool)
    valid[[20, 45]] = False
    whole = delta_phase(faces, valid, variant="paper", batch_size=16)
    # chunk edges: mid-batch, at a gap, just after one, a chunk ending on an invalid frame (its state is None)
    edges = [0, 7, 20, 21, 38, 46, 50, 70]
    parts, state, states = [], None, {}
    for a, e in zip(edges[:-1], edges[1:]):
        maps, state = delta_phase(faces[a:e], valid[a:e], previous=state, variant="paper", batch_size=16,
                                  return_state=True)
        parts.append(maps)
        states[e] = state
    assert states[21] is None and states[46] is None
    for k in whole:
        assert np.array_equal(np.concatenate([p[k] for p in parts]), whole[k])

    # resuming from cached faces: the state rebuilt from the faces so far equals the carried one
    for at in (38, 50):
        rebuilt = motion_state(faces[:at], valid[:at], variant="paper", batch_size=16)
        assert all(np.array_equal(rebuilt.turns[k], states[at].turns[k]) for k in ("s0", "s1"))
        rest = delta_phase(faces[at:], valid[at:], previous=rebuilt, variant="paper", batch_size=16)
        assert all(np.array_equal(rest[k], whole[k][at:]) for k in whole)

    # the turns carry real information: without them the rows differ
    turns = states[38].turns
    assert max(np.abs(v).max() for v in turns.values()) >= 2
    zeroed = MotionState(states[38].face, {k: np.zeros_like(v) for k, v in turns.items()})
    rest = delta_phase(faces[38:], valid[38:], previous=zeroed, variant="paper", batch_size=16)
    assert not np.allclose(rest["s0"][:7], whole["s0"][38:45], atol=1e-3)
    with pytest.raises(BadInputError, match="MotionState"):
        delta_phase(faces[38:], previous=faces[37], variant="paper")


def test_mimamo_variant_takes_a_state_too():
    faces = drifting(40, seed=2)
    whole = delta_phase(faces, batch_size=16)
    first, state = delta_phase(faces[:25], batch_size=16, return_state=True)
    assert state.turns is None and np.array_equal(state.face, faces[24])
    rest = delta_phase(faces[25:], previous=state, batch_size=16)
    for k in whole:
        assert np.array_equal(np.concatenate([first[k], rest[k]]), whole[k])
    assert motion_state(faces[:25]).face is not None


def test_paper_variant_differs_from_mimamo_and_drifts_with_the_unwrap():
    """Measured on this clip: rows 1-12 after the start differ by ~0.4 RMS (correlation ~0.93); by rows 100-160
    ~0.75 RMS (~0.80): the turns k random-walk where the amplitude is low and, with A_t != A_{t-1}, their 2 pi
    offsets leak into D_t more the longer the unwrap runs. The order of the steps alone: mimamo with the paper's
    settings (MOTION_V1: sigma 2, whole-map mean, no window; its default takes the head's drift out too)."""
    faces = face_clip(160)
    mimamo, paper = delta_phase(faces, config=MotionConfig(**MOTION_V1)), delta_phase(faces, variant="paper")

    def compare(rows):
        x, y = mimamo["s0"][rows].ravel().astype(float), paper["s0"][rows].ravel().astype(float)
        return np.sqrt(((x - y) ** 2).mean() / (x ** 2).mean()), np.corrcoef(x, y)[0, 1]

    early, early_corr = compare(slice(1, 13))
    late, late_corr = compare(slice(100, 160))
    assert 0.2 < early < 0.6 and early_corr > 0.85
    assert late > 1.5 * early and late_corr < early_corr
