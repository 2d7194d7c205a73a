"""predict with several checkpoints: the mean of the fold models' predictions (the released code's test protocol),
scored as `train` scores its held-out videos, and every model named in what it writes. Real Zarr caches, real
trainings."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from cli import main
from features.errors import BadInputError
from pipeline import store
from train.checkpoint import sha256
from train.evaluate import fill_nearest
from train.metrics import ccc
from train.predict import predict_cache
from train.synth import make_cache
from train.trainer import TrainConfig, train

TINY = {"dataset": "aw", "width": 4, "window": 4, "length": 32, "stride": 16, "batch_size": 4, "folds": 2,
        "lr": 0.1, "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False, "epochs": 1}
TEST = ["v05", "v06"]   # make_cache's labelled test split: held out (the Aff-Wild protocol)


@pytest.fixture(scope="module")
def folds(tmp_path_factory):
    """A cache with a labelled test split and the two fold models of a 2-fold run, with their metrics."""
    root = tmp_path_factory.mktemp("ens")
    make_cache(root / "c", "aw", videos=7, frames=60)
    runs = [train(TrainConfig(cache=str(root / "c"), out=str(root / f"f{k}"), streams="spatial", fold=k, **TINY))
            for k in range(2)]
    return root, [root / f"f{k}" / "best.pt" for k in range(2)], runs


def _labels(cache, video):
    return store.open_video(cache, "aw", video)["labels"][:]


def test_one_model_on_its_held_out_split_scores_what_train_reported(folds, tmp_path):
    root, ckpts, runs = folds
    res = predict_cache(root / "c", "aw", ckpts[0], tmp_path, split="test", echo=lambda *a: None)
    sc = res["scores"]
    assert sc["videos"] == TEST and sc["held_out"] and sc["models"] == 1 and not sc["seen"]
    for k in ("ccc_arousal", "ccc_valence", "pcc_arousal", "rmse_valence"):
        assert sc[k] == pytest.approx(runs[0][k], abs=1e-6), k
    assert sc["face_only"]["ccc_arousal"] == pytest.approx(runs[0]["face_only"]["ccc_arousal"], abs=1e-6)
    made = json.loads((tmp_path / "predict.json").read_text())
    assert made["scores"]["ccc_mean"] == pytest.approx(runs[0]["ccc_mean"], abs=1e-6)
    assert made["scores"]["labels"] == {v: "synth-l" for v in TEST}    # the labels the numbers came from
    assert made["checkpoint_sha256"] == sha256(ckpts[0]) and made["combined"] == "one model"


def _by_hand(folder, std):
    """The released code's correct() on the test videos' predictions of the frames with a face (predict's CSVs: the
    spread around their mean set to the training labels' std), then every other frame filled from the nearest."""
    frames = [pd.read_csv(folder / f"{v}.csv") for v in TEST]
    pred = np.concatenate([f[["arousal", "valence"]].to_numpy() for f in frames])
    valid = np.concatenate([f.valid.to_numpy() for f in frames])
    m, s = pred[valid].mean(0), pred[valid].std(0)
    scaled = m + (pred - m) * np.asarray(std) / s
    at = np.cumsum([0] + [len(f) for f in frames])
    return np.concatenate([fill_nearest(scaled[a:b], valid[a:b]) for a, b in zip(at[:-1], at[1:])])


def test_the_released_codes_rescaling_is_scored_beside_by_train_and_predict(folds, tmp_path):
    """The released code rescaled every set of predictions to the training labels' std before scoring (its
    correct()), and each fold model's test predictions before their mean; train and predict score that beside the
    plain scores, from the training videos' labels."""
    root, ckpts, runs = folds
    m = runs[0]
    std = np.nanstd(np.concatenate([_labels(root / "c", v) for v in m["videos"]["train"]]), axis=0)
    np.testing.assert_allclose(m["rescaled"]["label_std"], std, rtol=1e-6)
    np.testing.assert_allclose(torch.load(ckpts[0], weights_only=True)["label_std"], std, rtol=1e-6)
    labels = np.concatenate([_labels(root / "c", v) for v in TEST])
    parts = []
    for k, c in enumerate(ckpts):
        one = predict_cache(root / "c", "aw", c, tmp_path / f"m{k}", split="test", echo=lambda *a: None)
        parts.append(_by_hand(tmp_path / f"m{k}", runs[k]["rescaled"]["label_std"]))
        assert one["scores"]["rescaled"]["ccc_mean"] == pytest.approx(runs[k]["rescaled"]["ccc_mean"], abs=1e-6)
    for d, dim in enumerate(("arousal", "valence")):
        assert m["rescaled"][f"ccc_{dim}"] == pytest.approx(ccc(parts[0][:, d], labels[:, d]), abs=1e-4)
        assert m["rescaled"][f"ccc_{dim}"] != pytest.approx(m[f"ccc_{dim}"], abs=1e-3)
    both = predict_cache(root / "c", "aw", ckpts, tmp_path / "both", split="test", echo=lambda *a: None)
    mean = np.mean(parts, axis=0)
    for d, dim in enumerate(("arousal", "valence")):
        assert both["scores"]["rescaled"][f"ccc_{dim}"] == pytest.approx(ccc(mean[:, d], labels[:, d]), abs=1e-4)
    # --rescale writes those predictions: each model's rescaled, then their mean; its scores are of what it wrote
    written = predict_cache(root / "c", "aw", ckpts, tmp_path / "w", split="test", rescaled=True, echo=lambda *a: None)
    files = pd.concat([pd.read_csv(tmp_path / "w" / f"{v}.csv") for v in TEST])
    faces = files.valid.to_numpy()
    np.testing.assert_allclose(files[["arousal", "valence"]].to_numpy()[faces], mean[faces], atol=1e-4)   # from 5-decimal CSVs, scaled
    assert written["scores"]["ccc_mean"] == pytest.approx(both["scores"]["rescaled"]["ccc_mean"], abs=1e-6)
    made = json.loads((tmp_path / "w" / "predict.json").read_text())
    assert made["rescaled"]["label_std"] == [r["rescaled"]["label_std"] for r in runs]
    assert json.loads((tmp_path / "both" / "predict.json").read_text())["rescaled"] is None
    ck = torch.load(ckpts[1], map_location="cpu", weights_only=True)
    del ck["label_std"]          # as a checkpoint written before train kept it
    old = tmp_path / "old.pt"
    torch.save(ck, old)
    with pytest.raises(BadInputError, match="old.pt: this checkpoint does not keep its training labels' std"):
        predict_cache(root / "c", "aw", [ckpts[0], old], tmp_path / "x", split="test", rescaled=True)
    assert not (tmp_path / "x").exists()


def test_fold_models_are_averaged_scored_and_named(folds, tmp_path):
    root, ckpts, _ = folds
    alone = [predict_cache(root / "c", "aw", c, tmp_path / f"m{k}", split="test", echo=lambda *a: None)
             for k, c in enumerate(ckpts)]
    both = predict_cache(root / "c", "aw", ckpts, tmp_path / "both", split="test", echo=lambda *a: None)
    assert not both["failed"] and alone[0]["scores"]["ccc_mean"] != alone[1]["scores"]["ccc_mean"]
    filled, labels = [], []
    for v in TEST:
        one, two, mean = (pd.read_csv(tmp_path / d / f"{v}.csv") for d in ("m0", "m1", "both"))
        cols = ["arousal", "valence"]
        np.testing.assert_allclose(mean[cols], (one[cols] + two[cols]) / 2, atol=2e-5)   # 5-decimal CSVs
        assert (mean.valid == one.valid).all() and mean.arousal[mean.valid].notna().all()
        filled.append(fill_nearest(mean[cols].to_numpy(), mean.valid.to_numpy()))
        labels.append(_labels(root / "c", v))
    filled, labels = np.concatenate(filled), np.concatenate(labels)
    sc = both["scores"]
    assert sc["models"] == 2 and sc["held_out"]
    for d, dim in enumerate(("arousal", "valence")):   # every labelled frame of the mean, no face: the nearest
        assert sc[f"ccc_{dim}"] == pytest.approx(ccc(filled[:, d], labels[:, d]), abs=1e-4)
    made = json.loads((tmp_path / "both" / "predict.json").read_text())
    assert [m["checkpoint_sha256"] for m in made["models"]] == [sha256(c) for c in ckpts]
    assert made["combined"] == "mean of 2 models' predictions" and "checkpoint_sha256" not in made
    from PIL import Image
    caption = Image.open(tmp_path / "both" / "v05.png").text["Description"]
    assert caption.startswith("mean of 2 models:") and all(sha256(c)[:12] in caption for c in ckpts)


def test_scores_of_videos_a_model_trained_on_are_marked(folds, tmp_path):
    root, ckpts, runs = folds
    res = predict_cache(root / "c", "aw", ckpts, tmp_path, split="train", echo=lambda *a: None)
    sc = res["scores"]
    trained_on = set(runs[0]["videos"]["train"] + runs[0]["videos"]["val"])
    assert not sc["held_out"] and set(sc["seen"]) == trained_on == set(sc["videos"])
    assert sc["seen"]["v00"] == [str(c) for c in ckpts]
    r = CliRunner().invoke(main, ["predict", "--cache", str(root / "c"), "--dataset", "aw", "--split", "train",
                                  "--checkpoint", str(ckpts[0]), "--checkpoint", str(ckpts[1]),
                                  "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    assert "labelled videos of split train" in r.output and "mean of 2 models): CCC arousal" in r.output
    assert "NOT held out: 5 of these videos" in r.output


def test_videos_trained_on_are_known_in_a_copy_of_the_cache(folds, tmp_path):
    """A cache copied elsewhere (scratch space on a cluster) holds the same videos: their scores are no more
    held-out there. A video whose group records another source under the same name is another video."""
    import shutil

    root, ckpts, runs = folds
    copy = tmp_path / "copy"
    shutil.copytree(root / "c", copy)
    g = store.open_video(copy, "aw", "v01", mode="r+")
    g.attrs["source_identity"] = "another file under the same name"
    trained_on = set(runs[0]["videos"]["train"] + runs[0]["videos"]["val"])
    sc = predict_cache(copy, "aw", ckpts[0], tmp_path / "p", split="train", echo=lambda *a: None)["scores"]
    assert not sc["held_out"] and set(sc["seen"]) == trained_on - {"v01"} and "v01" in trained_on
    test = predict_cache(copy, "aw", ckpts[0], tmp_path / "t", split="test", echo=lambda *a: None)["scores"]
    assert test["held_out"] and not test["seen"]


def test_models_that_cannot_be_averaged_are_refused(folds, tmp_path):
    root, ckpts, _ = folds
    with pytest.raises(BadInputError, match="averaging it twice would weigh it double"):
        predict_cache(root / "c", "aw", [ckpts[0], ckpts[0]], tmp_path / "o", split="test", echo=lambda *a: None)
    ck = torch.load(ckpts[1], map_location="cpu", weights_only=True)
    ck["level"] = "video"        # as a model of one label per utterance (OMG) records it
    omg = tmp_path / "omg.pt"
    torch.save(ck, omg)
    with pytest.raises(BadInputError, match="predict different things and cannot be averaged"):
        predict_cache(root / "c", "aw", [ckpts[0], omg], tmp_path / "o", split="test", echo=lambda *a: None)
    assert not (tmp_path / "o").exists()


def test_a_prediction_is_reused_only_from_the_same_models_and_data(folds, tmp_path):
    """ablate's fold-mean cells reuse <cell>/fold_mean (reuse=True): the recorded scores come back when the same
    models read the same data; another model set, a video whose source changed, or a file gone runs the models."""
    import shutil

    root, ckpts, _ = folds
    copy, out = tmp_path / "copy", tmp_path / "p"
    shutil.copytree(root / "c", copy)

    def run(models):
        return predict_cache(copy, "aw", models, out, split="test", echo=lambda *a: None, reuse=True)

    first = run(ckpts)
    assert not first.get("reused")
    stamp = (out / "v05.csv").stat().st_mtime_ns
    again = run(ckpts)
    assert again["reused"] and again["scores"] == json.loads(json.dumps(first["scores"]))
    assert (out / "v05.csv").stat().st_mtime_ns == stamp            # nothing was written again
    assert not run(ckpts[:1]).get("reused")                           # other models
    assert not run(ckpts).get("reused")
    assert run(ckpts)["reused"]
    store.open_video(copy, "aw", "v06", mode="r+").attrs["source_identity"] = "the video file was replaced"
    assert not run(ckpts).get("reused")                               # same fingerprints, another source
    (out / "v05.csv").unlink()
    redone = run(ckpts)
    assert not redone.get("reused") and (out / "v05.csv").is_file()
