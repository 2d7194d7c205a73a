"""The OMG protocol on real Zarr caches: one snippet per second (random start per epoch in training, seeded; one
sampling at evaluation), one prediction per utterance scored over utterances, 5-fold cross-validation over Train and
Validation merged by default, exact resume, and padding kept out of the model."""
import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from features.errors import BadInputError
from pipeline import store
from train import data
from train.metrics import ccc
from train.model import MimamoNet
from train.predict import predict_cache
from train.synth import make_cache
from train.trainer import TrainConfig, train

TINY = {"dataset": "omg", "width": 4, "window": 4, "length": 8, "batch_size": 4, "folds": 3, "lr": 0.1,
        "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False, "epochs": 1}
# four YouTube videos of three utterances each; video y3's utterances form the validation set
NAMES = [f"y{k}__u{j}" for k in range(4) for j in range(3)]
SPLITS = ["train"] * 9 + ["validation"] * 3


def _coded(path, n=300, fps=25.0, faces=None):
    """One video whose arrays encode the frame number (so sampled rows can be checked exactly); a face in the frames
    ``faces`` (a range; default all but 0-2)."""
    code = (np.arange(n) % 2048).astype("f2")
    valid = np.zeros(n, bool)
    valid[faces if faces is not None else slice(3, n)] = True
    arrays = {"valid": valid, "resnet50": np.tile(code[:, None], (1, 2048)),
              "dphase_s0": np.broadcast_to(code[:, None, None, None], (n, 2, 48, 48)).copy(),
              "dphase_s1": np.broadcast_to(code[:, None, None, None], (n, 2, 24, 24)).copy(),
              "labels": np.full((n, 2), np.nan, np.float32)}
    arrays["dphase_s0"][:, 1] *= -1        # orientation 1 carries -t, to check the channel order
    store.write_video(path, "omg", "a__u1", arrays, {"split": "train", "fps": fps, "n_frames": n,
                                                     "video_labels": {"arousal": 0.5, "valence": -0.5}})
    store.write_index(path, "omg", [store.index_row(path, "omg", "a__u1")])
    return data.video_table(path, "omg")


def test_snippets_one_per_second_with_their_motion_windows(tmp_path):
    rows = _coded(tmp_path)
    window, left, right = 12, *data.window_span(12)
    ev = data.SequenceDataset(tmp_path, "omg", rows, window=window, length=64, test=True, level="video",
                              sampling="snippets")
    assert ev.length == 12 and len(ev) == 1            # 300 frames at 25 fps: 12 snippets, one item
    it = ev[0]
    assert it["frames"].tolist() == [25 * k for k in range(12)]
    assert it["rgb"][:, 7].tolist() == it["frames"].tolist() and it["valid"][1:].all() and not it["valid"][0]
    assert it["vlabel"].tolist() == [0.5, -0.5] and it["mask"].tolist() == [False] + [True] * 11
    w0 = data.snippet_windows(torch.as_tensor(it["m0"])[None].float())[0]     # [12, 2N, 48, 48]
    for j, c in enumerate(it["frames"]):
        want = np.clip(np.arange(c - left, c + right + 1, dtype=np.float32), 0, None)    # no motion before frame 0
        np.testing.assert_array_equal(w0[j, :window, 4, 4].numpy(), want)       # orientation 0, time k
        np.testing.assert_array_equal(w0[j, window:, 4, 4].numpy(), -want)      # orientation 1
    tr = data.SequenceDataset(tmp_path, "omg", rows, window=window, length=5, level="video", sampling="snippets")
    assert len(tr) == 3                                 # 12 snippets, at most 5 per item
    starts = []
    for epoch in range(6):
        tr.set_epoch(0, epoch)
        first = tr[0]["frames"][0]
        again = data.SequenceDataset(tmp_path, "omg", rows, window=window, length=5, level="video",
                                     sampling="snippets")
        again.set_epoch(0, epoch)
        assert again[0]["frames"][0] == first and 0 <= first < 25            # drawn from (seed, epoch) only
        assert tr[1]["frames"].tolist() == [first + 25 * k for k in range(5, 10)]
        starts.append(first)
    assert len(set(starts)) > 2                         # a new start each epoch: every frame gets used


def test_evaluation_samples_from_the_first_start_that_finds_a_face(tmp_path):
    rows = _coded(tmp_path, faces=slice(3, 20))          # 1 s grids from frames 0, 1 and 2 miss the face
    ev = data.SequenceDataset(tmp_path, "omg", rows, window=4, test=True, level="video", sampling="snippets")
    it = ev[0]
    assert it["frames"].tolist() == [3 + 25 * k for k in range(12)] and it["mask"].tolist() == [True] + [False] * 11


@pytest.fixture(scope="module")
def omg(tmp_path_factory):
    root = tmp_path_factory.mktemp("omg")
    make_cache(root / "c", "omg", videos=12, frames=50, names=NAMES, splits=SPLITS, video_labels=True,
               frame_rate=10.0)
    return TrainConfig(cache=str(root / "c"), out=str(root / "run"), streams="spatial", **TINY)


def test_omg_protocol_scores_one_prediction_per_utterance(omg, tmp_path):
    m = train(replace(omg, out=str(tmp_path / "r"), plots=True))
    p = m["protocol"]
    assert p["name"] == "omg" and p["pool_validation"] is True and m["config"]["pool_validation"] is True
    assert p["held_out"] == "fold 0" and p["trained_on"] == ["train", "validation"] and m["split"] == "fold 0"
    assert "one snippet" in p["sampling"] and p["scoring"].startswith("one prediction per utterance")
    side = {v: k for k, vs in m["videos"].items() for v in vs}
    assert set(side) == set(NAMES)                     # validation utterances are in the folds
    for k in range(4):                                 # a video's utterances never straddle folds
        assert len({side[f"y{k}__u{j}"] for j in range(3)}) == 1
    pred = pd.read_parquet(tmp_path / "r" / "predictions.parquet")
    assert sorted(pred.video) == sorted(m["videos"]["test"]) and len(pred) % 3 == 0      # whole videos held out
    n = {v: int(store.open_video(omg.cache, "omg", v).attrs["n_frames"]) for v in pred.video}
    for v, pv in m["per_video"].items():       # one snippet per second (10 fps), less those without a face
        assert math.ceil(n[v] / 10) - 3 <= pv["snippets"] <= math.ceil(n[v] / 10), (v, pv, n[v])
        assert pv["label_arousal"] == pytest.approx(store.index_row(omg.cache, "omg", v)["video_arousal"])
    assert m["ccc_valence"] == pytest.approx(ccc(pred.valence.to_numpy(), pred.label_valence.to_numpy()))
    assert (tmp_path / "r" / "predictions.png").is_file()
    ho = train(replace(omg, out=str(tmp_path / "h"), pool_validation=False, folds=2))
    assert ho["split"] == "validation" and sorted(ho["videos"]["test"]) == NAMES[9:]


def test_omg_predict_from_the_cache_writes_one_line_per_utterance(omg, tmp_path):
    train(replace(omg, out=str(tmp_path / "r")))
    res = predict_cache(omg.cache, "omg", tmp_path / "r" / "best.pt", tmp_path / "p", split="validation",
                        echo=lambda *a: None)
    table = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert [p.name for p in res["written"]] == ["predictions.csv"] and sorted(table.video) == NAMES[9:]
    assert table.arousal.notna().all() and (table.snippets > 0).all()
    with pytest.raises(BadInputError, match="one label per video"):
        predict_cache(omg.cache, "omg", tmp_path / "r" / "best.pt", tmp_path / "q", fmt="abaw", echo=lambda *a: None)


def test_fold_models_average_their_one_prediction_per_utterance_and_score_it(omg, tmp_path):
    """The mean of the fold models' per-utterance predictions, scored over utterances; one model on its held-out
    split scores what `train` reported."""
    quiet = lambda *a: None  # noqa: E731
    runs = [train(replace(omg, out=str(tmp_path / f"f{k}"), pool_validation=False, folds=2, fold=k)) for k in (0, 1)]
    ckpts = [tmp_path / f"f{k}" / "best.pt" for k in (0, 1)]
    one = [predict_cache(omg.cache, "omg", c, tmp_path / f"p{k}", split="validation", echo=quiet)
           for k, c in enumerate(ckpts)]
    assert one[0]["scores"]["held_out"] and one[0]["scores"]["videos"] == NAMES[9:]
    assert one[0]["scores"]["ccc_valence"] == pytest.approx(runs[0]["ccc_valence"], abs=1e-6)
    trained = [store.index_row(omg.cache, "omg", v)["video_arousal"] for v in runs[0]["videos"]["train"]]
    assert runs[0]["rescaled"]["label_std"][0] == pytest.approx(np.std(trained))   # one label per utterance
    assert one[0]["scores"]["rescaled"]["ccc_mean"] == pytest.approx(runs[0]["rescaled"]["ccc_mean"], abs=1e-6)
    both = predict_cache(omg.cache, "omg", ckpts, tmp_path / "pb", split="validation", echo=quiet)
    tables = [pd.read_csv(tmp_path / d / "predictions.csv") for d in ("p0", "p1", "pb")]
    assert not np.allclose(tables[0].arousal, tables[1].arousal, atol=1e-4)
    np.testing.assert_allclose(tables[2].arousal, (tables[0].arousal + tables[1].arousal) / 2, atol=2e-5)
    labels = [store.index_row(omg.cache, "omg", v)["video_valence"] for v in tables[2].video]
    predict_cache(omg.cache, "omg", ckpts, tmp_path / "pr", split="validation", rescaled=True, echo=quiet)
    scaled = [t.arousal.mean() + (t.arousal - t.arousal.mean()) * r["rescaled"]["label_std"][0] / t.arousal.std(ddof=0)
              for t, r in zip(tables[:2], runs)]        # the released code's correct(), each model, over utterances
    np.testing.assert_allclose(pd.read_csv(tmp_path / "pr" / "predictions.csv").arousal, (scaled[0] + scaled[1]) / 2,
                               atol=1e-4)
    assert both["scores"]["ccc_valence"] == pytest.approx(ccc(tables[2].valence.to_numpy(), np.array(labels)),
                                                          abs=1e-4)


def test_omg_submission_takes_the_organisers_rows_in_their_order(omg, tmp_path):
    """--format omg: the organisers' CSV (BOM, their columns) fixes the rows and their order, utterances as written
    there; values are the per-utterance predictions; a row without a prediction refuses the whole file."""
    train(replace(omg, out=str(tmp_path / "r")))
    best, quiet = tmp_path / "r" / "best.pt", (lambda *a: None)
    predict_cache(omg.cache, "omg", best, tmp_path / "p", split="validation", echo=quiet)
    by_id = pd.read_csv(tmp_path / "p" / "predictions.csv").set_index("video")
    table = tmp_path / "omg_ValidationVideos.csv"
    table.write_text("\ufefflink,start,end,video,utterance\r\n" + "".join(
        f"l,0,1,y3,u{j}.mp4\r\n" for j in (2, 0, 1)), encoding="utf-8")
    res = predict_cache(omg.cache, "omg", best, tmp_path / "s", split="validation", fmt="omg", sample=table,
                        echo=quiet)
    assert [p.name for p in res["written"]] == ["omg_submission.csv"]
    sub = pd.read_csv(tmp_path / "s" / "omg_submission.csv")
    assert list(sub.columns) == ["video", "utterance", "arousal", "valence"]
    assert list(sub.video + "/" + sub.utterance) == ["y3/u2.mp4", "y3/u0.mp4", "y3/u1.mp4"]
    for row in sub.itertuples():
        want = by_id.loc[f"y3__{row.utterance[:-4]}"]
        assert (row.arousal, row.valence) == pytest.approx((want.arousal, want.valence), abs=1e-5)
    assert json.loads((tmp_path / "s" / "predict.json").read_text())["omg_table"]["rows"] == 3
    with open(table, "a") as fh:
        fh.write("l,0,1,y0,u1.mp4\r\n")
    with pytest.raises(BadInputError, match=r"1 of its 4 entries have no prediction \(y0__u1: in split 'train'"):
        predict_cache(omg.cache, "omg", best, tmp_path / "t", split="validation", fmt="omg", sample=table, echo=quiet)
    assert not (tmp_path / "t" / "omg_submission.csv").exists()
    with pytest.raises(BadInputError, match="pass it with --sample"):
        predict_cache(omg.cache, "omg", best, tmp_path / "t", split="validation", fmt="omg", echo=quiet)


def test_a_submission_of_some_rows_names_the_labelled_utterances_its_scores_lack(omg, tmp_path):
    """--format omg --sample with 2 of the validation split's 3 utterances printed "scores of the 2 labelled videos
    of split validation" with nothing naming the third: read as the split's score. Now scores.left_out (printed and in
    predict.json) names it; the scores are those of the submitted rows, recomputed here from the submission."""
    train(replace(omg, out=str(tmp_path / "r")))
    table = tmp_path / "omg_ValidationVideos.csv"
    table.write_text("link,start,end,video,utterance\n" + "".join(f"l,0,1,y3,u{j}.mp4\n" for j in (2, 0)))
    res = predict_cache(omg.cache, "omg", tmp_path / "r" / "best.pt", tmp_path / "s", split="validation", fmt="omg",
                        sample=table, echo=lambda *a: None)
    sc = res["scores"]
    assert sc["videos"] == ["y3__u0", "y3__u2"] and sc["n"] == 2
    assert sc["left_out"] == {"y3__u1": "not a row of omg_ValidationVideos.csv (--sample): the scores are of its rows "
                                        "only"}
    assert json.loads((tmp_path / "s" / "predict.json").read_text())["scores"]["left_out"] == sc["left_out"]
    sub = pd.read_csv(tmp_path / "s" / "omg_submission.csv")
    labels = {v: (store.index_row(omg.cache, "omg", v)["video_arousal"], store.index_row(omg.cache, "omg", v)[
        "video_valence"]) for v in sc["videos"]}
    for k, dim in enumerate(("arousal", "valence")):
        got = sub[dim].to_numpy()
        want = np.array([labels[f"y3__{u[:-4]}"][k] for u in sub.utterance])
        assert sc[f"ccc_{dim}"] == pytest.approx(ccc(got, want), abs=1e-4)


def test_splits_reads_only_those_the_papers_cross_validation_beside_a_labelled_test_set(tmp_path, capsys):
    """A cache with OMG's labelled test set holds it out (Table 1); --splits train,validation reads only those, as
    the paper's 5-fold cross-validation (Tables 3-4) did, and the same flags reuse the finished run."""
    names = NAMES + ["t0__u0", "t0__u1", "t0__u2"]
    make_cache(tmp_path / "c", "omg", videos=15, frames=50, names=names, splits=SPLITS + ["test"] * 3,
               video_labels=True, frame_rate=10.0)
    cfg = TrainConfig(cache=str(tmp_path / "c"), out=str(tmp_path / "h"), streams="spatial", **TINY)
    held = train(cfg)
    assert held["split"] == "test" and sorted(held["videos"]["test"]) == names[12:]
    cv = train(replace(cfg, out=str(tmp_path / "cv"), splits="train,validation"))
    assert cv["split"] == "fold 0" and cv["protocol"]["trained_on"] == ["train", "validation"]
    assert {v for vs in cv["videos"].values() for v in vs} == set(NAMES)      # the test videos are not read
    assert cv["config"]["splits"] == ["train", "validation"]
    capsys.readouterr()
    again = train(replace(cfg, out=str(tmp_path / "cv"), splits=("train", "validation"), reuse=True, quiet=False))
    assert "same settings and data; reused" in capsys.readouterr().err and again["ccc_mean"] == cv["ccc_mean"]
    with pytest.raises(BadInputError, match="--splits names valid, which no labelled video"):
        train(replace(cfg, out=str(tmp_path / "x"), splits="train,valid"))
    from train.ablate import ablate  # the table says which splits its runs read
    ablate(cfg.cache, "omg", ["window=4"], tmp_path / "abl", replace(cfg, splits=("train", "validation")), folds=3,
           fold_ids=[0])
    assert "splits=train+validation," in (tmp_path / "abl" / "ablation.md").read_text()


def test_omg_kill_and_resume_gives_identical_results(omg, tmp_path):
    base = replace(omg, out=str(tmp_path / "full"), streams="both", pretrain=False, epochs=2, num_workers=2, length=4)
    full = train(base)
    cut = replace(base, out=str(tmp_path / "cut"), stop_after=1)
    assert train(cut).get("interrupted")
    resumed = train(replace(cut, stop_after=None, resume=True))
    for k in ("ccc_arousal", "ccc_valence", "best_epoch"):
        assert resumed[k] == full[k], k
    a = pd.read_csv(tmp_path / "full" / "log.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "cut" / "log.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["per_video"] == \
        json.loads((tmp_path / "full" / "metrics.json").read_text())["per_video"]


def test_padding_is_kept_out_of_the_model():
    """An utterance of 4 snippets padded to 10 gets the outputs it gets alone, whatever the padding holds; and in
    training, BatchNorm's statistics come from its rows only."""
    torch.manual_seed(0)
    model = MimamoNet(streams="both", window=4, width=4).eval()
    rgb, m0, m1 = torch.randn(2, 10, 2048), torch.randn(2, 10, 8, 48, 48), torch.randn(2, 10, 8, 24, 24)
    present = torch.ones(2, 10, dtype=torch.bool)
    present[1, 4:] = False
    rgb[1, 4:], m0[1, 4:] = 1e3, -1e3                  # whatever padding holds must not matter
    mask = present.clone()
    out = model(rgb, m0, m1, mask=mask, present=present)
    alone = model(rgb[1:, :4], m0[1:, :4], m1[1:, :4], mask=mask[1:, :4])
    torch.testing.assert_close(out["frame"][1, :4], alone["frame"][0])
    torch.testing.assert_close(out["video"][1], alone["video"][0])
    full = model(rgb[:1], m0[:1], m1[:1], mask=mask[:1])
    torch.testing.assert_close(out["frame"][0], full["frame"][0])
    model.train()
    bn = model.spatial[0][1]
    model(rgb, m0, m1, mask=mask, present=present)
    want = rgb[present] @ model.spatial[0][0].weight.T + model.spatial[0][0].bias     # the 14 present rows
    torch.testing.assert_close(bn.running_mean, 0.1 * want.mean(0).detach(), rtol=1e-4, atol=1e-5)
