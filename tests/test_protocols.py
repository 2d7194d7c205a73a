"""Evaluation protocols on real Zarr caches: ABAW's held-out validation split, folds by recording, every labelled
frame scored (no face: the nearest prediction) with face-only scores beside, and predict from a cache in the csv and
ABAW formats."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli import main
from features.errors import BadInputError
from pipeline import store
from train.ablate import ablate
from train.checkpoint import sha256
from train.evaluate import fill_nearest
from train.metrics import ccc
from train.predict import predict_cache, write_abaw
from train.predict_out import STAGING
from train.synth import make_cache
from train.trainer import TrainConfig, split_videos, train

TINY = {"dataset": "aw2", "width": 4, "window": 4, "length": 32, "stride": 16, "batch_size": 4, "folds": 2,
        "lr": 0.1, "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False, "epochs": 1}
SPLITS = ["train"] * 5 + ["validation"] * 2          # Aff-Wild2 as data_manifest.yaml names its splits
VALIDATION = {"v05", "v06"}


def _blank(cache, dataset, video, lo, hi):
    """Frames lo..hi-1 of a video without a face (their labels stay), as after a detector miss."""
    g = store.open_video(cache, dataset, video, mode="r+")
    valid = g["valid"][:]
    valid[lo:hi] = False
    g["valid"][:] = valid


@pytest.fixture(scope="module")
def abaw(tmp_path_factory):
    """An Aff-Wild2-like cache (train and validation splits), and a spatial model trained on it."""
    root = tmp_path_factory.mktemp("abaw")
    make_cache(root / "c", "aw2", videos=7, frames=60, splits=SPLITS)
    _blank(root / "c", "aw2", "v06", 5, 12)
    cfg = TrainConfig(cache=str(root / "c"), out=str(root / "run"), streams="spatial", **TINY)
    return cfg, train(cfg)


def test_abaw_validation_is_held_out_and_reported(abaw):
    cfg, m = abaw
    assert m["split"] == "validation" and set(m["videos"]["test"]) == VALIDATION
    assert not VALIDATION & set(m["videos"]["train"] + m["videos"]["val"])     # never trained or selected on
    assert m["protocol"]["name"] == "abaw" and m["protocol"]["held_out"] == "validation"
    assert m["protocol"]["trained_on"] == ["train"] and m["config"]["pool_validation"] is False
    assert set(m["per_video"]) == VALIDATION


def test_the_run_plots_say_what_made_them(abaw, tmp_path):
    """curves.png and predictions.png carry, as a caption and as the PNG's Description, the run, data, settings,
    held-out videos, scores and fingerprints; the per-epoch curve is named for the selection videos, which under
    ABAW are not the Validation_Set that is held out."""
    from PIL import Image

    from train.report import caption

    cfg, _ = abaw
    m = train(replace(cfg, out=str(tmp_path / "run"), plots=True))
    text = caption(m)
    assert text.startswith(f"{tmp_path / 'run'}: aw2 in {cfg.cache}; streams spatial, input dphase, arch paper, ")
    assert (f"held out: validation (2 videos, protocol abaw); CCC arousal {m['ccc_arousal']:.3f}, "
            f"valence {m['ccc_valence']:.3f}; arrays: resnet50 synth-r") in text
    for png in ("curves.png", "predictions.png"):
        assert Image.open(tmp_path / "run" / png).text["Description"] == text


def test_pool_validation_puts_it_into_the_folds(abaw, tmp_path):
    cfg, held = abaw
    m = train(replace(cfg, out=str(tmp_path / "pooled"), pool_validation=True, folds=3))
    assert m["split"] == "fold 0" and m["protocol"]["held_out"] == "fold 0"
    assert m["protocol"]["trained_on"] == ["train", "validation"] and m["config"]["pool_validation"] is True
    assert VALIDATION <= set(sum(m["videos"].values(), []))
    assert m["identity"]["videos"] != held["identity"]["videos"]
    saved = json.loads((tmp_path / "pooled" / "metrics.json").read_text())
    assert saved["split"] == "fold 0" and saved["protocol"]["pool_validation"] is True


def test_cli_flag_and_ablation_header_name_the_protocol(abaw, tmp_path):
    cfg, _ = abaw
    args = ["train", "--cache", cfg.cache, "--dataset", "aw2", "--streams", "spatial", "--epochs", "1", "--lr", "0.1",
            "--folds", "3", "--width", "4", "--window", "4", "--num-workers", "0", "--threads", "1", "--no-plots"]
    r = CliRunner().invoke(main, args + ["--pool-validation", "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert "split=fold 0" in r.output
    table = ablate(cfg.cache, "aw2", ["width=4"], tmp_path / "abl", replace(cfg, out=str(tmp_path)), folds=2,
                   fold_ids=[0])
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "Protocol abaw: the validation split is held out and reported (never trained or selected on)" in md
    assert "scoring: all labelled frames" in md and "CCC mean (face frames)" in md
    assert table.protocol[0].startswith("Protocol abaw")
    fold = json.loads((tmp_path / "abl" / "width=4" / "fold0" / "metrics.json").read_text())
    assert "as the paper's released code scored" in md and "| CCC mean (rescaled) |" in md    # beside, named
    assert table.ccc_mean_rescaled[0] == pytest.approx(fold["rescaled"]["ccc_mean"])
    assert f"| {fold['rescaled']['ccc_mean']:.3f} | 1 |" in md


def test_ablation_scores_the_mean_of_its_fold_models_on_the_held_out_split(abaw, tmp_path):
    """With a held-out split and two folds done, a cell also scores the mean of its fold models' predictions on it,
    as `predict` with both checkpoints does (its files and predict.json in <cell>/fold_mean)."""
    cfg, _ = abaw
    table = ablate(cfg.cache, "aw2", ["width=4"], tmp_path / "abl", replace(cfg, out=str(tmp_path)), folds=2)
    cell = tmp_path / "abl" / "width=4"
    folds = [cell / f"fold{k}" / "best.pt" for k in (0, 1)]
    alone = predict_cache(cfg.cache, "aw2", folds, tmp_path / "p", split="validation", echo=lambda *a: None)
    assert table.ccc_mean_fold_mean[0] == pytest.approx(alone["scores"]["ccc_mean"], abs=1e-9)
    assert table.ccc_mean_fold_mean_rescaled[0] == pytest.approx(alone["scores"]["rescaled"]["ccc_mean"], abs=1e-9)
    assert table.ccc_mean_fold_mean[0] != pytest.approx(table.ccc_mean[0], abs=1e-4)   # not the mean of the scores
    made = json.loads((cell / "fold_mean" / "predict.json").read_text())
    assert [m["checkpoint_sha256"] for m in made["models"]] == [sha256(f) for f in folds]
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| CCC mean (mean of the folds' predictions) |" in md and "as the released code made its test" in md
    assert f"| {table.ccc_mean_fold_mean[0]:.3f} | {table.ccc_mean_fold_mean_rescaled[0]:.3f} | 2 |" in md
    one = ablate(cfg.cache, "aw2", ["width=4"], tmp_path / "one", replace(cfg, out=str(tmp_path)), folds=2,
                 fold_ids=[0])
    assert "ccc_mean_fold_mean" not in one and "mean of the folds" not in (tmp_path / "one" / "ablation.md").read_text()
    # the table moved (its runs' metrics.json still name the old folder): its own models make the column, not those
    # found where the runs were first trained (gone here; another table's, at worst)
    shutil.move(tmp_path / "abl", tmp_path / "moved")
    again = ablate(cfg.cache, "aw2", ["width=4"], tmp_path / "moved", replace(cfg, out=str(tmp_path)), folds=2)
    assert again.ccc_mean_fold_mean[0] == pytest.approx(table.ccc_mean_fold_mean[0], abs=1e-9)
    made = json.loads((tmp_path / "moved" / "width=4" / "fold_mean" / "predict.json").read_text())
    assert [m["checkpoint"] for m in made["models"]] == [str(tmp_path / "moved" / "width=4" / f"fold{k}" / "best.pt")
                                                        for k in (0, 1)]
    md = (tmp_path / "moved" / "ablation.md").read_text()   # every deciding setting of the base, not the grid's
    assert "patience=" in md and "batch_size=4" in md and "seed=0" in md and "width=" not in md.split("Data:")[0]


def test_folds_keep_the_entries_of_one_recording_together():
    ids = ["a_left", "a_right", "b_left", "b_right", "c", "d", "e__u1", "e__u2", "e__u3", "f__u1", "f__u2", "g", "h"]
    rows = [{"video": v, "split": "train"} for v in ids]
    for seed in range(6):
        for fold in range(3):
            s = split_videos(rows, 3, fold, seed, held_out=None)
            side = {r["video"]: k for k, part in s.items() for r in part}
            assert len(side) == len(ids)
            for rec in ("a", "b", "e", "f"):
                assert len({k for v, k in side.items() if v.startswith(rec + "_")}) == 1, (seed, fold, rec, s)


def test_fill_nearest_takes_the_nearest_face_frame():
    pred = np.arange(10, dtype=np.float32)[:, None].repeat(2, 1)
    valid = np.array([0, 0, 1, 0, 0, 0, 1, 0, 1, 0], bool)
    got = fill_nearest(pred, valid)[:, 0]
    assert got.tolist() == [2, 2, 2, 2, 2, 6, 6, 6, 8, 8]       # frame 4: equally near 2 and 6, takes the earlier
    assert np.isnan(fill_nearest(pred, np.zeros(10, bool))).all()


def test_every_labelled_frame_is_scored_and_face_only_scores_stay_beside(tmp_path):
    make_cache(tmp_path / "c", "aw", videos=6, frames=80, test_videos=2)
    for v in ("v04", "v05"):
        _blank(tmp_path / "c", "aw", v, 10, 50)
    cfg = TrainConfig(cache=str(tmp_path / "c"), out=str(tmp_path / "r"), streams="spatial", **{**TINY, "dataset": "aw"})
    m = train(cfg)
    assert m["protocol"]["name"] == "affwild" and m["protocol"]["scoring"].startswith("all labelled frames")
    pred = pd.read_parquet(tmp_path / "r" / "predictions.parquet")
    labelled = pred[["label_arousal", "label_valence"]].notna().all(axis=1)
    assert m["n"] == labelled.sum() and m["face_only"]["n"] == (labelled & pred.valid).sum() < m["n"]
    for v, t in pred.groupby("video"):
        faces = np.flatnonzero(t.valid)
        for f in np.flatnonzero(~t.valid.to_numpy()):      # the nearest frame with a face; the earlier on a tie
            near = min(faces, key=lambda s: (abs(s - f), s))
            assert t.arousal.iloc[f] == t.arousal.iloc[near], (v, f, near)
    assert m["ccc_arousal"] == pytest.approx(ccc(pred.arousal.to_numpy(), pred.label_arousal.to_numpy()))
    face = pred[pred.valid]
    assert m["face_only"]["ccc_valence"] == pytest.approx(ccc(face.valence.to_numpy(), face.label_valence.to_numpy()))
    assert m["ccc_arousal"] != pytest.approx(m["face_only"]["ccc_arousal"])
    assert set(m["per_video"]["v04"]["face_only"]) >= {"ccc_arousal", "n"}


def test_predict_from_a_cache_in_both_formats(abaw, tmp_path):
    cfg, _ = abaw
    ckpt = f"{cfg.out}/best.pt"
    csv = predict_cache(cfg.cache, "aw2", ckpt, tmp_path / "csv", split="validation", echo=lambda *a: None)
    assert not csv["failed"] and sorted(p.name for p in csv["written"]) == ["v05.csv", "v05.png", "v06.csv", "v06.png"]
    from PIL import Image
    made_by = Image.open(tmp_path / "csv" / "v05.png").text["Description"]   # the plot says what made it
    assert made_by.startswith(f"model {ckpt} (sha256 {sha256(ckpt)[:12]}; streams spatial, input dphase, arch paper; "
                              f"trained on aw2 in ") and made_by.endswith(f"read: aw2 in {cfg.cache}; see predict.json")
    abaw_files = predict_cache(cfg.cache, "aw2", ckpt, tmp_path / "abaw", split="validation", fmt="abaw",
                               echo=lambda *a: None)
    assert sorted(p.name for p in abaw_files["written"]) == ["v05.txt", "v06.txt"]
    made = json.loads((tmp_path / "abaw" / "predict.json").read_text())   # what model and data made these files
    assert made["checkpoint_sha256"] == sha256(ckpt) and made["config"]["streams"] == cfg.streams
    assert (made["dataset"], made["split"], made["format"]) == ("aw2", "validation", "abaw")
    assert made["fingerprints"] == {"resnet50": "synth-r", "valid": "synth-v"} and made["written"] == ["v05.txt", "v06.txt"]
    for v in VALIDATION:
        n = int(store.open_video(cfg.cache, "aw2", v).attrs["n_frames"])
        lines = (tmp_path / "abaw" / f"{v}.txt").read_text().splitlines()
        assert lines[0] == "valence,arousal" and len(lines) == n + 1
        sub = pd.read_csv(tmp_path / "abaw" / f"{v}.txt")
        per_frame = pd.read_csv(tmp_path / "csv" / f"{v}.csv")
        assert sub.notna().all().all() and sub.abs().max().max() <= 1
        faces = per_frame.valid.to_numpy()
        want = fill_nearest(per_frame[["arousal", "valence"]].to_numpy(), faces).clip(-1, 1)
        np.testing.assert_allclose(sub[["arousal", "valence"]].to_numpy(), want, atol=2e-5)
        assert v != "v06" or not faces[5:12].any()
    r = CliRunner().invoke(main, ["predict", "--cache", cfg.cache, "--dataset", "aw2", "--split", "validation",
                                  "--checkpoint", ckpt, "--format", "abaw", "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cli" / "v05.txt").read_text() == (tmp_path / "abaw" / "v05.txt").read_text()
    r = CliRunner().invoke(main, ["predict", "--cache", cfg.cache, "--checkpoint", ckpt, "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--dataset" in r.output


def test_abaw_files_have_as_many_lines_as_the_annotation_file(abaw, tmp_path):
    """A label file one line longer (or shorter) than the video decodes to, accepted by --label-slack, is what the
    ABAW file is scored against: the file takes its count, the extra line repeating the last frame's prediction."""
    cfg, _ = abaw
    cache = tmp_path / "c"
    make_cache(cache, "aw2", videos=7, frames=60, splits=SPLITS)
    for video, diff in (("v05", 1), ("v06", -2)):   # as `features --label-slack` records them (test_datasets.py)
        store.open_video(cache, "aw2", video, mode="r+").attrs["label_frame_diff"] = diff
    store.write_index(cache, "aw2", [store.index_row(cache, "aw2", f"v{i:02d}") for i in range(7)])
    res = predict_cache(cache, "aw2", f"{cfg.out}/best.pt", tmp_path / "abaw", split="validation", fmt="abaw",
                        echo=lambda *a: None)
    plain = predict_cache(cache, "aw2", f"{cfg.out}/best.pt", tmp_path / "csv", split="validation",
                          echo=lambda *a: None)
    assert not res["failed"] and not plain["failed"]
    v05 = (tmp_path / "abaw" / "v05.txt").read_text().splitlines()
    v06 = (tmp_path / "abaw" / "v06.txt").read_text().splitlines()
    n5, n6 = (int(store.open_video(cache, "aw2", v).attrs["n_frames"]) for v in ("v05", "v06"))
    assert (len(v05), len(v06)) == (1 + n5 + 1, 1 + n6 - 2)
    assert v05[-1] == v05[-2]   # the line past the last frame: its prediction again
    per_frame = pd.read_csv(tmp_path / "csv" / "v06.csv")
    want = fill_nearest(per_frame[["arousal", "valence"]].to_numpy(), per_frame.valid.to_numpy()).clip(-1, 1)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "abaw" / "v06.txt")[["arousal", "valence"]], want[:n6 - 2],
                               atol=2e-5)
    notes = json.loads((tmp_path / "abaw" / "predict.json").read_text())["notes"]
    assert notes == {"v05": f"{n5 + 1} lines, as its annotation file has; the video decodes to {n5} frames; the lines "
                            "past its last frame repeat its last prediction",
                     "v06": f"{n6 - 2} lines, as its annotation file has; the video decodes to {n6} frames"}


def _sample_file(path, rows, header="image_location,valence,arousal", windows=False):
    """An organisers'-style sample submission: the header, then `<entry>/<NNNNN>.jpg,0,0` per (entry, 1-based frame);
    ``windows``: saved with a byte-order mark and CRLF line ends."""
    text = header + "\n" + "".join(f"{e}/{k:05d}.jpg,0,0\n" for e, k in rows)
    path.write_bytes((("\ufeff" + text.replace("\n", "\r\n")) if windows else text).encode("utf-8"))
    return path


def test_abaw_sample_gives_one_submission_in_its_order_and_counts(abaw, tmp_path):
    """The 3rd-ABAW-onward submission: the sample's rows, its order (v06 before v05), its frames (v06 two short and
    without frame 3, v05 one past the decoded ones: the last prediction again), our per-frame values."""
    cfg, _ = abaw
    ckpt = f"{cfg.out}/best.pt"
    n5, n6 = (int(store.open_video(cfg.cache, "aw2", v).attrs["n_frames"]) for v in ("v05", "v06"))
    rows = [("v06", k) for k in range(1, n6 - 1) if k != 3] + [("v05", k) for k in range(1, n5 + 2)]
    sample = _sample_file(tmp_path / "sample.txt", rows, header="image_location,arousal,valence", windows=True)
    res = predict_cache(cfg.cache, "aw2", ckpt, tmp_path / "sub", fmt="abaw", sample=sample, echo=lambda *a: None)
    assert not res["failed"] and [p.name for p in res["written"]] == ["abaw_va_submission.txt"]
    sub = pd.read_csv(tmp_path / "sub" / "abaw_va_submission.txt")
    assert list(sub.columns) == ["image_location", "arousal", "valence"]   # the sample's columns, in its order
    assert sub.image_location.tolist() == [f"{e}/{k:05d}.jpg" for e, k in rows]
    predict_cache(cfg.cache, "aw2", ckpt, tmp_path / "files", split="validation", fmt="abaw", echo=lambda *a: None)
    for v, n, take in (("v06", n6 - 3, [k for k in range(n6 - 2) if k != 2]), ("v05", n5 + 1, [*range(n5), n5 - 1])):
        per_video = pd.read_csv(tmp_path / "files" / f"{v}.txt")[["arousal", "valence"]].to_numpy()
        got = sub[sub.image_location.str.startswith(v + "/")][["arousal", "valence"]].to_numpy()
        np.testing.assert_allclose(got, per_video[take], atol=2e-6)
        assert len(got) == n
    made = json.loads((tmp_path / "sub" / "predict.json").read_text())
    assert made["abaw_sample"]["sha256"] == sha256(sample) and made["abaw_sample"]["rows"] == len(rows)
    assert made["notes"]["v05"].startswith(f"{n5 + 1} rows in the sample (frames up to {n5 + 1}); the video decodes "
                                           f"to {n5} frames; the rows past its last frame repeat")
    assert made["notes"]["v06"] == (f"{n6 - 3} rows in the sample (frames up to {n6 - 2}); the video decodes to "
                                    f"{n6} frames")
    r = CliRunner().invoke(main, ["predict", "--cache", cfg.cache, "--dataset", "aw2", "--checkpoint", ckpt,
                                  "--format", "abaw", "--sample", str(sample), "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    assert "note: v05: " in r.output
    assert (tmp_path / "cli" / "abaw_va_submission.txt").read_text() == \
        (tmp_path / "sub" / "abaw_va_submission.txt").read_text()


def test_abaw_sample_with_entries_not_predicted_or_malformed_is_refused(abaw, tmp_path):
    cfg, _ = abaw
    ckpt = f"{cfg.out}/best.pt"

    def refused(rows, match, **kw):
        sample = _sample_file(tmp_path / "s.txt", rows)
        with pytest.raises(BadInputError, match=match):
            predict_cache(cfg.cache, "aw2", ckpt, tmp_path / "o", fmt="abaw", sample=sample, echo=lambda *a: None, **kw)
        assert not (tmp_path / "o" / "abaw_va_submission.txt").exists()

    refused([("v05", 1), ("v99", 1)], r"1 of its 2 entries have no prediction \(v99: not among the videos predicted\)")
    refused([("v05", 1), ("v00", 1)], r"v00: in split 'train' of the cache, not 'validation'", split="validation")
    (tmp_path / "bad.txt").write_text("image_location,valence,arousal\nv05/00001.jpg,0,0\nv05/frame.jpg,0,0\n")
    with pytest.raises(BadInputError, match=r"bad.txt: line 3: 'v05/frame.jpg' is not <entry>/<NNNNN>.jpg"):
        predict_cache(cfg.cache, "aw2", ckpt, tmp_path / "o", fmt="abaw", sample=tmp_path / "bad.txt")
    (tmp_path / "bad.txt").write_text("v05/00001.jpg,0,0\n")
    with pytest.raises(BadInputError, match=r"line 1: the header is 'v05/00001.jpg,0,0'"):
        predict_cache(cfg.cache, "aw2", ckpt, tmp_path / "o", fmt="abaw", sample=tmp_path / "bad.txt")
    with pytest.raises(BadInputError, match="add --format abaw"):
        predict_cache(cfg.cache, "aw2", ckpt, tmp_path / "o", sample=tmp_path / "s.txt")


def test_a_cache_updated_while_predicting_leaves_no_files(abaw, tmp_path, monkeypatch):
    """A `features` run that swaps a video's arrays while predict reads them: no file of mixed data is left."""
    from train import predict as predict_module

    cfg, _ = abaw
    cache = tmp_path / "c"
    make_cache(cache, "aw2", videos=7, frames=60, splits=SPLITS)
    run_model = predict_module.run_model

    def features_meanwhile(*args, **kw):
        res = run_model(*args, **kw)
        store.set_fingerprints(store.open_video(cache, "aw2", "v06", mode="r+"), {"resnet50": "rebuilt-meanwhile"})
        return res

    monkeypatch.setattr(predict_module, "run_model", features_meanwhile)
    with pytest.raises(BadInputError, match=r"the cache changed while predicting \(v06: resnet50\)"):
        predict_cache(cache, "aw2", f"{cfg.out}/best.pt", tmp_path / "o", split="validation", echo=lambda *a: None)
    assert not list((tmp_path / "o").glob("v0*")) and not (tmp_path / "o" / STAGING).exists()


def test_abaw_files_clip_and_fill_every_frame(tmp_path):
    res = {"pred": np.array([[3.0, -0.5], [0.0, 0.0], [0.2, -7.0]], np.float32), "valid": np.array([1, 0, 1], bool)}
    path = write_abaw(tmp_path, {"video": "x_left"}, res)
    assert path.name == "x_left.txt"
    assert path.read_text().splitlines() == ["valence,arousal", "-0.500000,1.000000", "-0.500000,1.000000",
                                             "-1.000000,0.200000"]
    with pytest.raises(BadInputError, match="no face in any of its 3 frames"):
        write_abaw(tmp_path, {"video": "y"}, {**res, "valid": np.zeros(3, bool)})


def test_predict_from_a_cache_checks_each_video_in_its_group(abaw, tmp_path):
    cfg, _ = abaw
    ckpt = f"{cfg.out}/best.pt"
    cache = tmp_path / "c"
    make_cache(cache, "aw2", videos=7, frames=60, splits=SPLITS)       # same fingerprints as the training cache
    store.mark_stale(store.open_video(cache, "aw2", "v05", mode="r+"), ["resnet50"])    # a killed update
    res = predict_cache(cache, "aw2", ckpt, tmp_path / "o", split="validation", echo=lambda *a: None)
    assert [p.name for p in res["written"]] == ["v06.csv", "v06.png"]
    assert res["failed"][0][0] == "v05" and "resnet50 is stale" in res["failed"][0][1]
    assert "python cli.py features --dataset aw2" in res["failed"][0][1]
    store.set_fingerprints(store.open_video(cache, "aw2", "v06", mode="r+"), {"resnet50": "other-weights"})
    with pytest.raises(BadInputError, match=r"resnet50: trained on synth-r, cache has other-weights \(v06\)"):
        predict_cache(cache, "aw2", ckpt, tmp_path / "o2", split="validation", echo=lambda *a: None)
    with pytest.raises(BadInputError, match="no video of split 'test'"):
        predict_cache(cache, "aw2", ckpt, tmp_path / "o3", split="test", echo=lambda *a: None)
