"""`train --augment flip`: a seeded half of each epoch's training sequences read the mirrored faces' arrays; exact
resume; part of the run's identity; a cache without the flip arrays is refused naming `features --extras flip`.

A real Zarr cache (train/synth.py writes it through pipeline/store.py) with the arrays `features --extras flip` makes.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.errors import BadInputError
from train import augment
from train.synth import make_cache
from train.trainer import TrainConfig, prepare, train

TINY = {"dataset": "synth", "width": 4, "window": 4, "length": 32, "stride": 16, "batch_size": 4, "folds": 2, "lr": 0.1,
        "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("flipcache")
    make_cache(path, "synth", videos=6, frames=100, test_videos=2, flip=True)
    plain = tmp_path_factory.mktemp("plaincache")
    make_cache(plain, "synth", videos=6, frames=100, test_videos=2)
    return path, plain


def test_flipped_half_is_exact_and_depends_on_seed_and_epoch():
    a = augment.flipped_items(101, seed=3, epoch=0)
    assert a.sum() == 50
    np.testing.assert_array_equal(a, augment.flipped_items(101, seed=3, epoch=0))
    assert not np.array_equal(a, augment.flipped_items(101, seed=3, epoch=1))
    assert not np.array_equal(a, augment.flipped_items(101, seed=4, epoch=0))
    assert augment.flipped_name("dphase_s0@paper") == "dphase_s0@paper+flip"
    assert augment.flipped_name("resnet50") == "resnet50@flip"


def test_training_items_read_the_mirrored_arrays_for_the_drawn_half_only(cache):
    c, _ = cache
    run = prepare(TrainConfig(cache=str(c), out="unused", streams="both", pretrain=False, augment="flip", **TINY))
    from train.trainer import _datasets

    ds = _datasets(run)
    train_ds, val_ds = ds["train"], ds["val"]
    assert isinstance(train_ds, augment.FlipSequences) and not isinstance(val_ds, augment.FlipSequences)
    from pipeline import store

    left = 1   # window 4: motion rows t-1 .. t+2
    for epoch in (0, 3):
        train_ds.set_epoch(0, epoch)
        want = augment.flipped_items(len(train_ds), 0, epoch)
        assert 0 < want.sum() < len(want)
        for i in range(len(train_ds)):
            vi, start, _, _ = train_ds.items[i]
            g = store.open_video(c, "synth", train_ds.videos[vi]["video"])
            item, n = train_ds[i], int(g.attrs["n_frames"])
            frames = np.arange(start, start + train_ds.length)
            rgb = g["resnet50@flip" if want[i] else "resnet50"][:]
            np.testing.assert_array_equal(item["rgb"][frames < n], rgb[frames[frames < n]])
            rows = np.arange(start - left, start + train_ds.length + 2)
            inside = (rows >= 0) & (rows < n)
            m0 = g["dphase_s0@flip" if want[i] else "dphase_s0"][:]
            np.testing.assert_array_equal(item["m0"][inside], m0[rows[inside]])
    for i in range(len(val_ds)):   # never flipped
        vi, start, _, _ = val_ds.items[i]
        g = store.open_video(c, "synth", val_ds.videos[vi]["video"])
        n = min(start + val_ds.length, int(g.attrs["n_frames"])) - start
        np.testing.assert_array_equal(val_ds[i]["rgb"][:n], g["resnet50"][start:start + n])


def test_flip_is_part_of_the_identity_and_resume_is_exact(cache, tmp_path):
    c, _ = cache
    base = TrainConfig(cache=str(c), out=str(tmp_path / "full"), streams="both", pretrain=False, epochs=3,
                       augment="flip", **{**TINY, "num_workers": 1})
    full = train(base)
    saved = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert saved["config"]["augment"] == "flip"
    assert saved["identity"]["fingerprints"]["dphase_s0@flip"] == "synth-dphase_s0@flip"
    assert saved["identity"]["fingerprints"]["resnet50@flip"] == "synth-r@flip"
    cut = replace(base, out=str(tmp_path / "cut"), stop_after=1)
    assert train(cut).get("interrupted")
    resumed = train(replace(cut, stop_after=None, resume=True))
    for k in ("ccc_arousal", "ccc_valence", "rmse_arousal", "best_epoch"):
        assert resumed[k] == full[k], k
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "log.csv").drop(columns="seconds"),
                                  pd.read_csv(tmp_path / "cut" / "log.csv").drop(columns="seconds"))
    # without augmentation it is another run: not reused, and it learns other numbers
    plain = train(replace(base, augment=None, reuse=True))
    assert plain["config"]["augment"] is None and "dphase_s0@flip" not in plain["identity"]["fingerprints"]
    assert plain["ccc_arousal"] != full["ccc_arousal"]


def test_a_cache_without_flip_arrays_names_the_features_flag(cache, tmp_path):
    _, plain = cache
    with pytest.raises(BadInputError, match="--extras flip"):
        train(TrainConfig(cache=str(plain), out=str(tmp_path), streams="temporal", augment="flip", epochs=1, **TINY))
    with pytest.raises(BadInputError, match="augment"):
        train(TrainConfig(cache=str(plain), out=str(tmp_path), streams="temporal", augment="rotate", epochs=1, **TINY))


def test_ablation_tables_say_whether_a_row_was_augmented():
    from train.ablate import markdown, parse_grid, summarize_folds

    (key, values), = parse_grid(["augment=none,flip"])
    assert [replace(TrainConfig(), **{key: v}).augment for v in values] == [None, "flip"]
    row = {"streams": "temporal", "arch": "paper", "input": "dphase", **summarize_folds([]), "protocol": ""}
    assert ", augment=flip." in markdown(pd.DataFrame([row]), ["streams"], "synth", TrainConfig(augment="flip"))
    assert ", augment=none." in markdown(pd.DataFrame([row]), ["streams"], "synth", TrainConfig())


def test_video_level_snippets_read_the_mirrored_arrays_for_the_drawn_half(tmp_path):
    from pipeline import store
    from train.trainer import _datasets

    make_cache(tmp_path / "c", "synth", videos=6, frames=100, test_videos=2, flip=True, video_labels=True,
               frame_rate=10.0)
    run = prepare(TrainConfig(cache=str(tmp_path / "c"), out="unused", streams="spatial", augment="flip",
                              **{**TINY, "length": 4}))
    ds = _datasets(run)["train"]
    assert run.sel.level == "video" and ds.sampling == "snippets" and isinstance(ds, augment.FlipSequences)
    ds.set_epoch(0, 2)
    want = augment.flipped_items(len(ds), 0, 2)
    assert 0 < want.sum() < len(want)
    for i in range(len(ds)):
        item = ds[i]
        g = store.open_video(tmp_path / "c", "synth", ds.videos[item["video_idx"]]["video"])
        frames = item["frames"][item["frames"] >= 0]
        rgb = g["resnet50@flip" if want[i] else "resnet50"][:]
        np.testing.assert_array_equal(item["rgb"][: len(frames)], rgb[frames])


def _made(cache, made: dict, fps: dict | None = None):
    """Record in every group how its arrays were made (group attrs made_with, fingerprints), as `features` runs would
    have left them (train/synth.py records no made_with)."""
    from pipeline import store

    for video in store.done_videos(cache, "synth").video:
        g = store.open_video(cache, "synth", video, mode="r+")
        g.attrs["made_with"] = {**dict(g.attrs.get("made_with") or {}), **made}
        store.set_fingerprints(g, fps or {})


def _motion(variant, **motion):
    return {f"dphase_{s}@{variant}" if variant else f"dphase_{s}": {"motion_variant": variant, "motion": motion}
            for s in ("s0", "s1")}


def test_mirrored_arrays_made_otherwise_than_the_clean_ones_are_refused(tmp_path):
    """`features --motion-variant V --extras flip`, then V remade under other motion settings (--replace-variant) without
    --extras flip, or resnet50 remade under other --weights, or after a code version bump: the mirrored half of
    each epoch would read other features than the clean half, under fingerprints that each look fine."""
    from pipeline import settings, store

    c = tmp_path / "c"
    make_cache(c, "synth", videos=6, frames=100, test_videos=2, flip=True)
    temporal = TrainConfig(cache=str(c), out="unused", streams="temporal", augment="flip", **TINY)
    _made(c, {**_motion(None), **_motion("flip", mean_window=9)})
    with pytest.raises(BadInputError) as e:
        prepare(temporal)
    msg = str(e.value)
    assert "dphase_s0@flip was made with motion {'mean_window': 9}, dphase_s0 with motion {}" in msg, msg
    assert "the same for dphase_s1@flip" in msg and "videos v00, v01, v02, v03 and 2 more" in msg
    assert f"`python cli.py features --dataset synth --cache {c} --stages align,motion --extras flip " \
           "--replace-variant`" in msg
    assert prepare(replace(temporal, augment=None)) is not None   # without augmentation the flip arrays are not read
    # the weights of resnet50@flip
    _made(c, {**_motion("flip"), "resnet50": {"weights": "random", "seed": 0},
              "resnet50@flip": {"weights": "/w/resnet50_ferplus_dag.pth", "seed": 0}})
    assert prepare(temporal) is not None
    with pytest.raises(BadInputError, match=r"resnet50@flip was made with seed 0, weights /w/resnet50_ferplus_dag.pth, "
                                            r"resnet50 with seed 0, weights random .*--stages align,spatial --extras "
                                            r"flip --weights random`"):
        prepare(replace(temporal, streams="spatial"))
    # a code version bump: dphase remade (its fingerprint the current code's), dphase@flip left from before
    face = "synth-v"
    now = {n: settings.array_fingerprint(n, face) for n in ("dphase_s0", "dphase_s1", "dphase_s0@flip", "dphase_s1@flip")}
    old = {n: store.fingerprint("dphase", "0", {"older": "maths"}, face, n) for n in ("dphase_s0@flip", "dphase_s1@flip")}
    _made(c, {"resnet50@flip": {"weights": "random", "seed": 0}}, {**now, **old})
    with pytest.raises(BadInputError, match=r"dphase_s0@flip was made by another code version \(or weights file or "
                                            r"faces\) than dphase_s0.*--extras flip`"):
        prepare(temporal)
    _made(c, {}, now)
    assert prepare(temporal) is not None
    # what features now records beside each mirrored array: the fingerprint of the clean one it was made beside
    _made(c, {n + "@flip": {"motion_variant": "flip", "motion": {}, "clean_fingerprint": "before"}
              for n in ("dphase_s0", "dphase_s1")})
    with pytest.raises(BadInputError, match=r"dphase_s0@flip was made beside a dphase_s0 of fingerprint before, and "
                                            r"dphase_s0 has been remade since"):
        prepare(temporal)
    _made(c, {n + "@flip": {"motion_variant": "flip", "motion": {}, "clean_fingerprint": now[n]}
              for n in ("dphase_s0", "dphase_s1")})
    assert prepare(temporal) is not None


def test_a_mirrored_input_with_the_flip_augmentation_is_refused(cache, tmp_path):
    """--input dphase@flip --augment flip: the mirrored half would read dphase@flip again (flipped_name of a +flip
    array is itself), so the temporal stream was not augmented at all. A +flip input alone stays a model of the
    mirrored faces."""
    c, _ = cache
    cfg = TrainConfig(cache=str(c), out=str(tmp_path), streams="temporal", input="dphase@flip", augment="flip", **TINY)
    with pytest.raises(BadInputError, match=r"--input dphase@flip reads the mirrored faces' arrays already.*use --input "
                                            r"dphase --augment flip"):
        prepare(cfg)
    with pytest.raises(BadInputError, match=r"use --input dphase@paper --augment flip"):
        prepare(replace(cfg, input="dphase@paper+flip", streams="both"))
    assert prepare(replace(cfg, augment=None)).sel.fingerprints["dphase_s0@flip"] == "synth-dphase_s0@flip"
    assert prepare(replace(cfg, streams="spatial")) is not None   # no temporal stream: --input is not read


def test_ablate_refuses_unlike_mirrored_arrays_before_any_cell_trains(tmp_path):
    from train.ablate import ablate

    c = tmp_path / "c"
    make_cache(c, "synth", videos=6, frames=100, test_videos=2, flip=True)
    _made(c, {**_motion(None), **_motion("flip", mean_window=9)})
    with pytest.raises(BadInputError, match=r"dphase_s0@flip was made with motion \{'mean_window': 9\}"):
        ablate(c, "synth", ["augment=none,flip"], tmp_path / "abl", TrainConfig(cache=str(c), streams="temporal", **TINY),
               folds=2, fold_ids=[0])
    assert not (tmp_path / "abl").exists()   # the augment=none cell did not train first
