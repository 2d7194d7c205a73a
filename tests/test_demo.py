"""The demo dataset: layout, labels that mean what they claim, a detectable face, motion that survives encoding."""
from __future__ import annotations

import dataclasses
import importlib.util
import time
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest

from features.errors import BadInputError
from pipeline.demo import make_demo, read_labels
from pipeline.demo_render import (
    PATCH_X0,
    PATCH_Y0,
    background,
    frame_landmarks,
    render_frame,
    render_frames,
    site_box,
    stabilise,
)
from pipeline.demo_script import AROUSAL_SCALE, AROUSAL_SIGMA, SITES, demo_script


def _decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video, RGB, through the project's own streaming decoder."""
    from features.video import iter_chunks

    return [f for c in iter_chunks(path) for f in c.frames]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    summary = make_demo(out, videos=2, seconds=2.0, seed=3, test_videos=1, progress=False)
    return out, summary


def test_layout_and_one_label_per_decoded_frame(demo):
    out, summary = demo
    assert summary["frames"] == 2 * 60 and not summary["skipped"]
    assert [(r["id"], r["split"]) for r in summary["videos"]] == [("demo_000", "train"), ("demo_001", "test")]
    for row in summary["videos"]:
        split, vid = row["split"], row["id"]
        video = out / "videos" / split / f"{vid}.avi"
        assert Path(row["video"]) == video
        n = len(_decode(video))
        assert n == 60
        for dim in ("arousal", "valence"):
            labels = read_labels(out / "annotations" / split / dim / f"{vid}.txt")
            assert labels.shape == (n,)
            assert np.all(np.abs(labels) <= 1.0)
        script = demo_script(row["seed"], n)
        arousal = read_labels(out / "annotations" / split / "arousal" / f"{vid}.txt")
        np.testing.assert_allclose(arousal, script.arousal, atol=1e-6)


def test_dlib_finds_the_face_in_nearly_every_frame(demo):
    _out, summary = demo
    detector = dlib.get_frontal_face_detector()
    model = Path(importlib.util.find_spec("face_recognition_models").origin).parent / "models"
    predictor = dlib.shape_predictor(str(model / "shape_predictor_68_face_landmarks.dat"))
    found = total = 0
    errors = []
    for row in summary["videos"]:
        script = demo_script(row["seed"], row["frames"])
        for t, frame in enumerate(_decode(Path(row["video"]))):
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            rects = detector(gray, 0)
            found += len(rects) == 1
            total += 1
            if len(rects) == 1 and t % 10 == 0:  # the hard-coded landmarks follow the rendered face
                shape = predictor(gray, rects[0])
                got = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
                errors.append(np.median(np.hypot(*(got - frame_landmarks(script.head[t])).T)))
    assert found / total >= 0.95, f"face found in {found}/{total} frames"
    assert np.median(errors) < 3.0, errors


def test_rerun_skips_replaces_or_refuses(demo, tmp_path):
    out, summary = demo
    t0 = time.perf_counter()
    again = make_demo(out, videos=2, seconds=2.0, seed=3, test_videos=1, progress=False)
    assert again["skipped"] and time.perf_counter() - t0 < 1.0
    assert again["videos"] == summary["videos"]

    small = tmp_path / "small"
    make_demo(small, videos=1, seconds=0.2, seed=0, progress=False)
    other = make_demo(small, videos=2, seconds=0.2, seed=1, test_videos=1, progress=False)  # different: replaced
    assert not other["skipped"]
    assert sorted(p.name for p in (small / "videos" / "train").iterdir()) == ["demo_000.avi"]
    assert sorted(p.name for p in (small / "videos" / "test").iterdir()) == ["demo_001.avi"]

    moved = tmp_path / "moved"
    small.rename(moved)  # the manifest holds relative paths: a moved demo is still complete
    assert make_demo(moved, videos=2, seconds=0.2, seed=1, test_videos=1, progress=False)["skipped"]
    manifest = moved / "demo.json"
    manifest.write_text(manifest.read_text().replace('"complete": true', '"complete": false'))
    assert not make_demo(moved, videos=2, seconds=0.2, seed=1, test_videos=1, progress=False)["skipped"]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(BadInputError, match="foreign"):
        make_demo(foreign, videos=1, seconds=0.2, progress=False)
    assert (foreign / "thesis.tex").read_text() == "keep me"
    with pytest.raises(BadInputError):
        make_demo(foreign / "thesis.tex", videos=1, seconds=0.2, progress=False)


def test_deterministic_labels_and_frames(tmp_path):
    a = make_demo(tmp_path / "a", videos=1, seconds=0.3, seed=11, progress=False)
    b = make_demo(tmp_path / "b", videos=1, seconds=0.3, seed=11, progress=False)
    for key in ("arousal", "valence"):
        assert Path(a["videos"][0][key]).read_bytes() == Path(b["videos"][0][key]).read_bytes()
    s1, s2 = demo_script(5, 40), demo_script(5, 40)
    for f1, f2 in zip(render_frames(s1), render_frames(s2)):
        assert np.array_equal(f1, f2)
    assert not np.array_equal(demo_script(6, 40).arousal, s1.arousal)


def _energy_independently(events, n: int) -> np.ndarray:
    """Sum of squared per-frame speeds of the out-and-back events, smoothed: written apart from the generator."""
    sq = np.zeros(n)
    for _site, start, dur, amp in events.tolist():
        t = np.arange(start - 1, start + dur + 1)
        pos = np.where((t >= start) & (t <= start + dur), amp * np.sin(np.pi * (t - start) / dur), 0.0)
        speed = np.diff(pos)  # speed at frames start..start+dur
        frames = np.arange(start, start + dur + 1)
        keep = frames < n
        np.add.at(sq, frames[keep], speed[keep] ** 2)
    k = np.arange(-4 * AROUSAL_SIGMA, 4 * AROUSAL_SIGMA + 1)
    kernel = np.exp(-0.5 * (k / AROUSAL_SIGMA) ** 2)
    return np.convolve(sq, kernel / kernel.sum(), mode="same")


def test_arousal_is_the_realised_micro_motion_energy():
    for seed in range(5):
        s = demo_script(seed, 3000)
        assert len(s.events) > 100
        assert s.events["duration"].min() >= 2 and s.events["duration"].max() <= 10
        assert np.abs(s.events["amp"]).min() >= 0.3 - 1e-6 and np.abs(s.events["amp"]).max() <= 3.0 + 1e-6
        energy = _energy_independently(s.events, s.n_frames)
        mid = slice(30, -30)  # the generator reflects at the ends, the convolution pads with zeros
        assert np.corrcoef(np.sqrt(energy)[mid], s.arousal[mid])[0, 1] > 0.9
        expected = 2 * (1 - np.exp(-np.sqrt(energy) / AROUSAL_SCALE)) - 1
        np.testing.assert_allclose(s.arousal[mid], expected[mid], atol=1e-4)
        # The latent drives the events, but the label is what was realised; they agree only loosely.
        assert 0.5 < np.corrcoef(s.arousal_latent, s.arousal)[0, 1] < 0.98
        assert s.arousal.min() < -0.8 and s.arousal.max() > 0.8


def test_labels_independent_of_head_motion_and_lighting():
    rows = []
    for seed in range(40):
        s = demo_script(seed, 3000)
        speed = np.abs(np.gradient(s.head, axis=0))
        rows.append(np.column_stack([s.arousal, s.valence, s.head, speed, s.light]))
    x = np.concatenate(rows)
    c = np.corrcoef(x, rowvar=False)
    nuisance = slice(2, None)  # head pose (4), head speed (4), lighting (3)
    assert np.abs(c[0, nuisance]).max() < 0.15, c[0, nuisance]
    assert np.abs(c[1, nuisance]).max() < 0.15, c[1, nuisance]
    assert abs(c[0, 1]) < 0.15
    # Valence is a level held for seconds: its frame-to-frame change is far below the micro-motions'.
    s = demo_script(0, 3000)
    assert np.abs(np.diff(s.valence)).max() <= 2 * np.pi / 30 + 1e-6  # a full -1 -> 1 swing over a 0.5 s ramp


def _site_motion(frames, script) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean |difference| at the sites after undoing head pose and lighting, and the true site speeds."""
    st = [cv2.GaussianBlur(stabilise(f, script, t), (0, 0), 1.0) for t, f in enumerate(frames)]
    measured = np.zeros(len(frames) - 1)
    for name in SITES:
        box = site_box(name)
        measured += [np.abs(st[t][box] - st[t - 1][box]).mean() for t in range(1, len(st))]
    speed = np.abs(np.diff(script.site_displacement, axis=1)).sum(0)
    return measured, speed


def test_micro_motion_survives_encoding(demo):
    _, summary = demo
    m_dec, m_raw, speeds = [], [], []
    for row in summary["videos"]:
        script = demo_script(row["seed"], row["frames"])
        dec, speed = _site_motion(_decode(Path(row["video"])), script)
        raw, _ = _site_motion(list(render_frames(script)), script)
        m_dec.append(dec)
        m_raw.append(raw)
        speeds.append(speed)
    dec, raw, speed = (np.concatenate(v) for v in (m_dec, m_raw, speeds))
    r_dec, r_raw = np.corrcoef(dec, speed)[0, 1], np.corrcoef(raw, speed)[0, 1]
    print(f"micro-motion vs true speed: r_raw={r_raw:.3f} r_decoded={r_dec:.3f}")
    assert r_raw > 0.4, r_raw
    assert r_dec > 0.8 * r_raw, (r_dec, r_raw)
    assert np.corrcoef(dec, raw)[0, 1] > 0.9


def test_valence_cue_is_visible_after_encoding(tmp_path):
    s = demo_script(2, 40)
    sign = np.where((np.arange(40) // 5) % 2 == 0, 1.0, -1.0)  # +1/-1 alternating every 5 frames
    s = dataclasses.replace(s, valence_latent=sign, events=s.events[:0])
    path = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 360))
    bg = background(s.seed)
    for t in range(40):
        w.write(np.ascontiguousarray(render_frame(s, t, bg)[:, :, ::-1]))
    w.release()
    st = np.stack([stabilise(f, s, t) for t, f in enumerate(_decode(path))])
    mouth = (slice(125 - PATCH_Y0, 165 - PATCH_Y0), slice(190 - PATCH_X0, 260 - PATCH_X0))  # photo px
    pos, neg = st[sign > 0][(slice(None), *mouth)], st[sign < 0][(slice(None), *mouth)]
    signal = np.abs(pos.mean(0) - neg.mean(0)).mean()
    noise = np.abs(pos[0::2].mean(0) - pos[1::2].mean(0)).mean()
    print(f"valence mouth signal={signal:.2f} noise={noise:.2f}")
    assert signal > 4.0 and signal > 8 * noise, (signal, noise)
