"""Face transforms as feature variants: names (motion variant + gamma + flip), fingerprints, the `features` flags that
make them, and `features --extras flip` on a real video: the mirrored faces' arrays computed exactly from mirrored faces.

Real videos encoded by OpenCV, the real CLI (in-process), a real LocalCluster and Zarr cache.
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from synth_video import write_face_video

import cli
from features.errors import BadInputError
from pipeline import arrays, settings, store
from pipeline import face_transforms as ft
from pipeline.compute import MOTION_BATCH


def test_names_compose_in_one_order_and_bad_ones_are_refused():
    assert ft.with_flip(None) == "flip" and ft.with_flip("paper") == "paper+flip"
    assert ft.with_gamma("paper", 0.2) == "paper+gamma0.2" and ft.with_gamma(None, 0.4, 3) == "gamma0.4s3"
    assert ft.with_gamma("paper", 0) == "paper"   # beta 0 is the clean input
    assert ft.with_flip(ft.with_gamma(None, 0.2)) == "gamma0.2+flip"
    assert ft.split_variant("paper+gamma0.2+flip") == ("paper", ft.FaceTransform(0.2, 0, True))
    assert ft.transform_part("paper+gamma0.2") == "gamma0.2" and ft.motion_part("flip") is None
    for bad in ("flip+paper", "paper+flip+gamma0.2", "gamma0.20", "gamma0", "gamma1.5", "paper++flip", "flip+flip"):
        with pytest.raises(BadInputError):
            ft.split_variant(bad)
    with pytest.raises(BadInputError, match="48x48 faces only"):
        arrays.input_arrays("resnet50@gamma0.2")
    with pytest.raises(BadInputError, match="no motion settings"):
        arrays.input_arrays("flow@paper")
    assert arrays.input_arrays("flow@gamma0.2") == ("flow@gamma0.2",)


def test_the_flags_that_make_transformed_arrays():
    assert arrays.make_flags(["dphase_s0@paper+flip", "resnet50@flip"]) == [
        "--stages", "align,motion,spatial", "--extras", "flip", "--motion-variant", "paper"]
    assert arrays.make_flags(["flow@gamma0.2", "valid"]) == ["--stages", "align", "--extras", "flow",
                                                             "--motion-variant", "gamma0.2"]
    assert arrays.make_flags(["dphase_s0@paper+gamma0.2", "flow@gamma0.2"]) == [
        "--stages", "align,motion", "--extras", "flow", "--motion-variant", "paper+gamma0.2"]
    s = settings.Settings(extras=("flow", "flip"), motion_variant="paper", motion={"variant": "paper"})
    assert settings.wanted_arrays(s) == ["valid", "landmarks", "face48", "resnet50", "resnet50@flip", "dphase_s0@paper",
                                         "dphase_s1@paper", "dphase_s0@paper+flip", "dphase_s1@paper+flip", "flow",
                                         "flow@flip", "labels"]
    s = settings.Settings(extras=("flow",), motion_variant="paper+gamma0.2", motion={"variant": "paper"})
    assert "flow@gamma0.2" in settings.wanted_arrays(s) and "dphase_s0@paper+gamma0.2" in settings.wanted_arrays(s)


def test_a_transform_changes_its_arrays_fingerprint_only():
    face = "f" * 16
    plain = settings.array_fingerprint("dphase_s0", face)
    assert plain == store.fingerprint("dphase", arrays.KINDS["dphase"].version, settings.motion_config({}).as_dict(),
                                      face)   # untransformed: the fingerprint every existing cache holds
    fps = {settings.array_fingerprint(n, face) for n in ("dphase_s0@flip", "dphase_s0@gamma0.2", "dphase_s0@gamma0.2s1",
                                                         "dphase_s0@gamma0.3", "dphase_s0@gamma0.2+flip")}
    assert len(fps) == 5 and plain not in fps
    enc = {"architecture": "x", "weights": "random:seed=0"}
    assert settings.array_fingerprint("resnet50@flip", face, encoder_fp=enc) != settings.array_fingerprint(
        "resnet50", face, encoder_fp=enc)


def _features(*args):
    return CliRunner().invoke(cli.main, ["features", *map(str, args), "--workers", "1", "--no-progress"])


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    d = tmp_path_factory.mktemp("flipvideo")
    video = d / "mover.avi"
    write_face_video(video, 40, size=(320, 240), fourcc="MJPG", seed=4)
    c = tmp_path_factory.mktemp("flipcache")
    first = _features(video, "--cache", c, "--weights", "random", "--keep-faces")
    assert first.exit_code == 0, first.output
    clean = {k: np.asarray(v) for k, v in store.open_video(c, "videos", "mover").arrays()}
    outs = [_features(video, "--cache", c, "--weights", "random", "--keep-faces", "--extras", "flip"),
            _features(video, "--cache", c, "--weights", "random", "--keep-faces", "--extras", "flip",
                      "--motion-variant", "paper")]
    return c, clean, outs, video


def test_extras_flip_computes_the_mirrored_faces_arrays_exactly_from_cached_faces(flipped):
    from features.backbone import SpatialEncoder
    from features.motion import delta_phase, mirror_faces

    c, clean, outs, video = flipped
    for out in outs:
        assert out.exit_code == 0, out.output
        assert "0 new, 1 updated" in out.output and " 0.0 frames/s decoded" in out.output   # from face48 + face224
    g = store.open_video(c, "videos", "mover")
    face48, valid = clean["face48"], clean["valid"]
    for variant in ("mimamo", "paper"):
        want = delta_phase(mirror_faces(face48), valid, variant=variant, batch_size=MOTION_BATCH)   # pipeline's batches
        suffix = "flip" if variant == "mimamo" else "paper+flip"
        for s in ("s0", "s1"):
            np.testing.assert_array_equal(g[f"dphase_{s}@{suffix}"][:], want[s].astype(np.float16))
    # the rule on the clean maps (mirror, negate orientation 0) is not what is stored at 24x24: computed, not derived
    rule = clean["dphase_s1"].astype(np.float32)[..., ::-1].copy()
    rule[:, 0] *= -1
    got = g["dphase_s1@flip"][:].astype(np.float32)
    assert np.sqrt(np.mean((rule - got) ** 2)) > 0.05 * np.sqrt(np.mean(got ** 2))
    enc = SpatialEncoder("random", seed=0)
    face224 = clean["face224"][valid]
    mirrored = enc.encode(np.ascontiguousarray(face224[:, :, ::-1]))
    stored = g["resnet50@flip"][:][valid].astype(np.float32)
    np.testing.assert_allclose(stored, mirrored, rtol=2e-2, atol=2e-2 * float(np.abs(mirrored).max()))
    assert np.abs(stored - clean["resnet50"][valid].astype(np.float32)).max() > 0.1 * float(np.abs(mirrored).max())
    fps = dict(g.attrs["fingerprints"])
    for name in ("dphase_s0", "dphase_s1", "resnet50", "dphase_s0@paper"):
        assert fps[name] != fps[f"{name}@flip" if "@" not in name else name + "+flip"]
    for name in ("dphase_s0", "resnet50"):   # the clean arrays are untouched
        np.testing.assert_array_equal(g[name][:], clean[name])
    assert g.attrs["made_with"]["dphase_s0@paper+flip"]["motion"] == {"variant": "paper"}
    info = CliRunner().invoke(cli.main, ["info", "--cache", str(c)])
    assert any(ln.split()[:2] == ["dphase@paper+flip", "1/1"] for ln in info.output.splitlines()), info.output
    # a rerun finds them current; asking for the flip through --motion-variant says which flag makes it
    again = _features(video, "--cache", c, "--weights", "random",
                      "--keep-faces", "--extras", "flip")
    assert again.exit_code == 0 and "1 skipped" in again.output, again.output
    bad = _features(video, "--cache", c, "--motion-variant", "paper+flip")
    assert bad.exit_code == 2 and "--extras flip" in bad.output


def test_extras_flip_on_a_new_cache_makes_the_plain_and_mirrored_arrays(tmp_path):
    # a first run with --extras flip: the resume identity holds the default variant (key None) beside "flip"
    video = tmp_path / "fresh.avi"
    write_face_video(video, 24, size=(320, 240), fourcc="MJPG", seed=5)
    out = _features(video, "--cache", tmp_path / "c", "--weights", "random", "--stages", "align,motion",
                    "--extras", "flip")
    assert out.exit_code == 0 and "1 new" in out.output and "failed: 0" in out.output, out.output
    g = store.open_video(tmp_path / "c", "videos", "fresh")
    assert {"dphase_s0", "dphase_s0@flip"} <= set(g.array_keys())


def test_a_gamma_variant_is_made_from_the_corrupted_faces_of_a_new_and_of_a_replaced_video(tmp_path):
    """Video blocks carry face224 beside face48: gamma variants are made from the corrupted 48x48 faces of a new video,
    and kept (remade from the new faces) when the video file is replaced and its group rebuilt."""
    from features.motion import delta_phase, optical_flow
    from pipeline.compute import jitter_frames
    from pipeline.manifest import videos_from_files

    video = tmp_path / "clip.avi"
    write_face_video(video, 40, size=(320, 240), fourcc="MJPG", seed=6)
    c = tmp_path / "c"
    first = _features(video, "--cache", c, "--stages", "align,motion", "--extras", "flow", "--motion-variant", "gamma0.2")
    assert first.exit_code == 0 and "1 new" in first.output and "failed: 0" in first.output, first.output
    plain = _features(video, "--cache", c, "--stages", "align,motion")   # plain dphase beside it, from face48
    assert plain.exit_code == 0 and "1 updated" in plain.output, plain.output
    old48 = store.open_video(c, "videos", "clip")["face48"][:]
    write_face_video(video, 40, size=(320, 240), fourcc="MJPG", seed=7, motion="translate")   # another file, same path
    again = _features(video, "--cache", c, "--stages", "align,motion")   # without the variant: it is kept all the same
    assert again.exit_code == 0 and "1 rebuilt" in again.output and "failed: 0" in again.output, again.output
    g = store.open_video(c, "videos", "clip")
    face48, valid = g["face48"][:], g["valid"][:]
    assert valid.sum() > 30 and not np.array_equal(face48, old48)   # new faces
    bad = jitter_frames(face48, 0.2, 0, "clip", 0)
    want = delta_phase(bad, valid, batch_size=MOTION_BATCH)
    for s in ("s0", "s1"):
        np.testing.assert_array_equal(g[f"dphase_{s}@gamma0.2"][:], want[s].astype(np.float16))
    np.testing.assert_array_equal(g["flow@gamma0.2"][:], optical_flow(bad, valid)["flow"].astype(np.float16))
    # predict rebuilds a flow@gamma0.2 model's input, not plain flow, under the fingerprint the cache holds
    s = settings.settings_for(dict(g.attrs), ["flow@gamma0.2"])
    want_fp = settings.fingerprints(s, videos_from_files([video])[0])
    assert want_fp["flow@gamma0.2"] == dict(g.attrs["fingerprints"])["flow@gamma0.2"] and "flow" not in want_fp
    with pytest.raises(BadInputError, match="several face transforms"):   # one model reads one variant's faces
        settings.settings_for(dict(g.attrs), ["dphase_s0@paper", "flow@gamma0.2"])


def test_a_clean_variant_is_not_remade_away_from_its_mirrored_partner(tmp_path):
    """features --motion-variant mw9 --extras flip, then mw9 under other settings (--replace-variant) without --extras
    flip: that left dphase@mw9 of one mean window and dphase@mw9+flip of another, which train --augment flip read as
    one. Refused, naming --extras flip, which remakes both alike; each mirrored array records the clean fingerprint it
    was made beside; a group rebuilt from a replaced video remakes a kept mirrored variant with its clean one's settings."""
    video = tmp_path / "clip.avi"
    write_face_video(video, 24, size=(320, 240), fourcc="MJPG", seed=8)
    c = tmp_path / "c"
    args = [video, "--cache", c, "--stages", "align,motion", "--motion-variant", "mw9"]
    first = _features(*args, "--motion-mean-window", "9", "--extras", "flip")
    assert first.exit_code == 0 and "failed: 0" in first.output, first.output

    def made():
        g = store.open_video(c, "videos", "clip")
        return dict(g.attrs["made_with"]), dict(g.attrs["fingerprints"]), g["dphase_s0@mw9"][:]

    m, fps, before = made()
    assert m["dphase_s0@mw9+flip"]["clean_fingerprint"] == fps["dphase_s0@mw9"]
    lone = _features(*args, "--motion-mean-window", "5", "--replace-variant")
    assert lone.exit_code == 2, lone.output
    assert "dphase_s0@mw9 would be remade under other settings or code" in lone.output, lone.output
    assert "mirrored dphase_s0@mw9+flip stays as it was made" in lone.output and "add --extras flip" in lone.output
    m2, fps2, after = made()
    assert fps2 == fps and m2 == m
    np.testing.assert_array_equal(after, before)   # nothing replaced
    both = _features(*args, "--motion-mean-window", "5", "--replace-variant", "--extras", "flip")
    assert both.exit_code == 0 and "1 updated" in both.output, both.output
    m, fps, _ = made()
    assert m["dphase_s0@mw9"]["motion"] == m["dphase_s0@mw9+flip"]["motion"] == {"mean_window": 5}
    assert m["dphase_s1@mw9+flip"]["clean_fingerprint"] == fps["dphase_s1@mw9"] != fps2["dphase_s1@mw9"]
    write_face_video(video, 24, size=(320, 240), fourcc="MJPG", seed=9)   # another file: the group is rebuilt
    rebuilt = _features(*args, "--motion-mean-window", "7", "--replace-variant")
    assert rebuilt.exit_code == 0 and "1 rebuilt" in rebuilt.output, rebuilt.output
    m, fps, _ = made()
    assert m["dphase_s0@mw9+flip"]["motion"] == m["dphase_s0@mw9"]["motion"] == {"mean_window": 7}
    assert m["dphase_s0@mw9+flip"]["clean_fingerprint"] == fps["dphase_s0@mw9"]
