"""`ablate`: grid values read as their settings' types and checked before any cell trains; --fold-ids checked and
named in the table; the tables' columns (every grid axis, scores only rounded, runs under other threads noted); a
table from before a rerun is never left looking current beside cells it no longer describes; no table of cells that
had other videos (one extracted, or moved to the held-out split, between two cells).

A real Zarr cache (train/synth.py writes it through pipeline/store.py) and tiny real trainings.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from click.testing import CliRunner

from cli import main
from features.errors import BadInputError
from pipeline import store
from train.ablate import ablate, parse_grid
from train.synth import make_cache
from train.trainer import TrainConfig

TINY = {"dataset": "synth", "width": 4, "window": 4, "length": 32, "stride": 16, "batch_size": 4, "folds": 2,
        "lr": 0.1, "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False, "epochs": 1}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("ablcache")
    make_cache(path, "synth", videos=5, frames=40, test_videos=1, variants=("paper",))
    return path


def _base(cache, **kw):
    return TrainConfig(cache=str(cache), out="unused", **{**TINY, **kw})


def _fresh(tmp_path):
    """A cache of its own (the test changes it between cells): five videos, the last in the test split."""
    make_cache(tmp_path / "c", "synth", videos=5, frames=40, test_videos=1)
    return TrainConfig(cache=str(tmp_path / "c"), out="unused", **TINY)


def test_grid_values_are_read_as_their_settings_types():
    assert parse_grid(["milestones=20:25,10:15"]) == [("milestones", [(20, 25), (10, 15)])]
    assert parse_grid(["pool_validation=false,true,none"]) == [("pool_validation", [False, True, None])]
    assert parse_grid(["finetune_lr=0.01,none"]) == [("finetune_lr", [0.01, None])]
    assert parse_grid(["splits=train:validation,all"]) == [("splits", [("train", "validation"), None])]
    assert parse_grid(["augment=none,flip", "single-gru=true"]) == [("augment", [None, "flip"]), ("single_gru", [True])]
    for bad, match in [("milestones=1,x2", r"bad value 'x2'.*milestones takes epochs joined by ':'"),
                       ("pool_validation=maybe", r"pool_validation takes true, false or none"),
                       ("window=2,8", r"window=2 .* out of range \(window takes 4..16\)"),
                       ("lr=0,0.1", r"lr=0 .* out of range \(lr takes above 0.0\)"),
                       ("streams=spatial,fused", r"streams takes both, spatial or temporal")]:
        with pytest.raises(BadInputError, match=match):
            parse_grid([bad])


@pytest.mark.parametrize("key", ["fold", "folds", "out", "reuse", "resume", "threads", "device", "cache", "dataset",
                                 "init_spatial", "skip_unusable"])
def test_settings_that_cannot_be_grid_axes_are_refused_listing_the_axes(key):
    with pytest.raises(BadInputError) as e:
        parse_grid([f"{key}=1,2"])
    assert f"{key} cannot be a grid axis" in e.value.problem and "axes: streams, input, window" in e.value.hint


def test_a_key_or_a_value_given_twice_is_refused():
    with pytest.raises(BadInputError, match=r"--grid seed is given twice.*one --grid seed=V1,V2"):
        parse_grid(["seed=0,1", "seed=2"])
    with pytest.raises(BadInputError, match=r"gives lr=0.001 twice"):
        parse_grid(["lr=0.001,1e-3"])
    with pytest.raises(BadInputError, match=r"gives milestones=10:20 twice"):
        parse_grid(["milestones=10:20,10:20"])


def test_a_bad_cell_is_refused_before_any_cell_trains(cache, tmp_path):
    base = _base(cache, streams="temporal")
    out = tmp_path / "abl"
    with pytest.raises(BadInputError) as e:   # a variant the cache does not hold: not `features --motion-variant nope`
        ablate(cache, "synth", ["input=dphase,dphase@nope"], out, base, folds=2, fold_ids=[0])
    assert "the cache holds no dphase@nope" in e.value.problem
    assert "the inputs it holds: dphase, dphase@paper." in e.value.hint
    with pytest.raises(BadInputError, match=r"cell streams=both, augment=flip: --input dphase@flip reads the mirrored"):
        ablate(cache, "synth", ["streams=spatial,both", "augment=none,flip"], out, replace(base, input="dphase@flip"),
               folds=2, fold_ids=[0])
    assert not out.exists()   # nothing trained


def test_list_and_optional_values_reach_the_runs_as_their_types(cache, tmp_path):
    base = _base(cache, streams="spatial")
    table = ablate(cache, "synth", ["milestones=3:5", "pool_validation=false"], tmp_path / "abl", base, folds=2,
                   fold_ids=[0])
    run = tmp_path / "abl" / "milestones=3:5_pool_validation=False" / "fold0"
    cfg = json.loads((run / "metrics.json").read_text())["config"]
    assert cfg["milestones"] == [3, 5] and cfg["pool_validation"] is False
    assert list(table.milestones) == ["3:5"] and list(table.pool_validation) == [False]
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| 3:5 | False |" in md and "Mean over fold 0 of the 2 (--fold-ids), those with a finite score" in md


def test_cli_help_says_how_list_values_are_written():
    r = CliRunner().invoke(main, ["ablate", "--help"])
    assert r.exit_code == 0 and '"milestones=10:20,20:25"' in " ".join(r.output.split())


def test_fold_ids_are_checked_up_front_and_named(cache, tmp_path):
    from train.ablate import fold_list

    assert fold_list(None, 3) == [0, 1, 2] and fold_list([2, 0], 3) == [2, 0]
    with pytest.raises(BadInputError, match=r"--fold-ids 0,0 names fold 0 more than once"):
        fold_list([0, 0], 2)
    out = tmp_path / "abl"
    with pytest.raises(BadInputError, match=r"--fold-ids 0,5: 5 not in 0..1 \(--folds 2\)"):
        ablate(cache, "synth", ["width=4"], out, _base(cache, streams="spatial"), folds=2, fold_ids=[0, 5])
    assert not out.exists()   # fold 0 was not trained first
    flags = ["ablate", "--cache", str(cache), "--dataset", "synth", "--streams", "spatial", "--width", "4", "--folds",
             "2", "--epochs", "1", "--lr", "0.1", "--num-workers", "0", "--threads", "1", "--no-plots", "--grid",
             "width=4", "--out", str(out)]
    r = CliRunner().invoke(main, [*flags, "--fold-ids", "2"])
    assert r.exit_code != 0 and "--fold-ids 2: 2 not in 0..1" in r.output and "--fold " not in r.output, r.output
    r = CliRunner().invoke(main, [*flags, "--fold-ids", "1"])
    assert r.exit_code == 0 and "Mean over fold 1 of the 2 (--fold-ids)" in r.output, r.output
    assert "Mean over fold 1 of the 2 (--fold-ids)" in (out / "ablation.md").read_text()


def test_only_the_scores_are_rounded_in_the_tables(cache, tmp_path):
    out = tmp_path / "abl"
    r = CliRunner().invoke(main, ["ablate", "--cache", str(cache), "--dataset", "synth", "--streams", "spatial",
                                  "--width", "4", "--folds", "2", "--fold-ids", "0", "--epochs", "1", "--num-workers",
                                  "0", "--threads", "1", "--no-plots", "--grid", "lr=5e-5,1e-4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["lr"])
    assert [ln.split()[0] for ln in lines[head + 1:head + 3]] == ["5e-05", "0.0001"], r.output
    csv = (out / "ablation.csv").read_text().splitlines()
    assert csv[1].startswith("5e-05,") and csv[2].startswith("0.0001,")
    cols = csv[0].split(",")
    score = csv[1].split(",")[cols.index("ccc_arousal")]
    assert len(score.split(".")[1]) == 4   # scores keep 4 decimals
    md = (out / "ablation.md").read_text()
    assert "| 5e-05 |" in md and "| 0.0001 |" in md


def test_every_row_shows_the_value_of_every_grid_axis(cache, tmp_path):
    """--grid arch=paper,released --grid streams=spatial,temporal: the spatial rows were both '-' under arch."""
    table = ablate(cache, "synth", ["arch=paper,released", "streams=spatial,temporal"], tmp_path / "abl",
                   _base(cache), folds=2, fold_ids=[0])
    assert list(zip(table.arch, table.streams, table.input)) == [
        ("paper", "spatial", "-"), ("paper", "temporal", "dphase"), ("released", "spatial", "-"),
        ("released", "temporal", "dphase")]
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| paper | spatial | - |" in md and "| released | spatial | - |" in md


def test_a_table_of_runs_under_other_threads_says_so(cache, tmp_path):
    """Cells reused from a command with --threads 1 beside a cell trained now under 2 threads: CCC moves with the
    thread count (torch splits its CPU sums by thread), so the table says which ran under which."""
    from train.ablate import ran_under

    out, base = tmp_path / "abl", _base(cache, streams="spatial")
    first = ablate(cache, "synth", ["width=4,6"], out, base, folds=2, fold_ids=[0])
    assert "threads" not in (out / "ablation.md").read_text() and len(first.attrs["notes"]) == 1
    again = ablate(cache, "synth", ["width=4,6,8"], out, replace(base, threads=2), folds=2, fold_ids=[0])
    note = ("Runs trained under different torch threads or devices, which alone change the numbers (README): "
            "1 thread on cpu: width=4/fold0, width=6/fold0; 2 threads on cpu: width=8/fold0.")
    assert note in (out / "ablation.md").read_text() and note in again.attrs["notes"]
    resumed = {"threads_used": [{"epochs": [1, 2], "threads": 1, "device": "cpu"},
                                {"epochs": [3, 3], "threads": 4, "device": "cpu"}]}
    assert "1 thread on cpu then 4 threads on cpu: a/fold0" in ran_under({"a/fold0": resumed})
    cuda = {"threads_used": [{"epochs": [1, 2], "threads": 1, "device": "cuda"}]}
    assert "1 thread on cuda: b" in ran_under({"a": {"threads_used": resumed["threads_used"][:1]}, "b": cuda})


def test_a_rerun_killed_while_it_retrains_leaves_no_table_looking_current(cache, tmp_path):
    """A rerun under another --lr retrains the cell, and is killed: its old table (of the runs before) stayed beside a
    cell it no longer described. Now ablation.md is marked stale and ablation.csv removed before any cell trains; the
    run's own table is written whole at its end."""
    from kill_while_training import kill_once_it_trains

    from train.ablate import STALE

    out, base = tmp_path / "abl", _base(cache, streams="spatial")
    ablate(cache, "synth", ["width=4"], out, base, folds=2, fold_ids=[0])
    old = (out / "ablation.md").read_text()
    run = out / "width=4" / "fold0"
    cmd = ["ablate", "--cache", str(cache), "--dataset", "synth", "--streams",
           "spatial", "--width", "4", "--window", "4", "--folds", "2", "--fold-ids", "0", "--epochs", "10000",
           "--patience", "1000", "--milestones", "100", "--lr", "0.05", "--batch-size", "4", "--num-workers", "0",
           "--threads", "1", "--no-plots", "--grid", "width=4", "--out", str(out)]
    kill_once_it_trains(cmd, run)   # retraining, lr 0.05
    md = (out / "ablation.md").read_text()
    assert md.startswith(STALE) and md.endswith(old) and "has not finished" in md
    assert not (out / "ablation.csv").exists()
    ablate(cache, "synth", ["width=4"], out, base, folds=2, fold_ids=[0])   # run to its end: a current table
    assert not (out / "ablation.md").read_text().startswith(STALE) and (out / "ablation.csv").is_file()
    assert json.loads((run / "metrics.json").read_text())["config"]["lr"] == 0.1
    assert not list(out.glob("*.tmp.*"))


def test_an_earlier_predict_json_never_stays_beside_files_it_did_not_make(cache, tmp_path):
    """<cell>/fold_mean/predict.json (ablate's fold-mean prediction) was written last and in place: a call for other
    models that stopped part way (killed, or here a file it cannot write) left the earlier call's record beside the
    new files. Now the new files are written beside the folder's (train/predict_out.py) and moved in only when all
    are written, the earlier record leaving the folder before the first of them, the new one coming last."""
    from train.predict import predict_cache
    from train.trainer import train

    base = _base(cache, streams="spatial")
    ckpts = []
    for seed in (0, 1):
        train(replace(base, seed=seed, out=str(tmp_path / f"s{seed}")))
        ckpts.append(tmp_path / f"s{seed}" / "best.pt")
    out = tmp_path / "fold_mean"
    first = predict_cache(cache, "synth", [ckpts[0]], out, split="test", echo=lambda *a: None)
    made = json.loads((out / "predict.json").read_text())
    assert made["written"] and not list(out.glob("*.tmp.*"))
    from pathlib import Path

    csv = next(Path(p) for p in first["written"] if str(p).endswith(".csv"))
    csv.unlink()
    csv.mkdir()   # the second call cannot write its file there: it stops part way, as a kill would
    with pytest.raises(BadInputError, match=re.escape(f"{csv}: cannot move") + r".*\(move " + re.escape(f"{csv} out of the way")):
        predict_cache(cache, "synth", ckpts, out, split="test", echo=lambda *a: None)
    assert not (out / "predict.json").exists()


def test_a_video_extracted_between_two_runs_of_an_ablation_writes_no_table(tmp_path, monkeypatch):
    """A `features` run that adds a labelled video between two cells changes no fingerprint, label or source the runs
    share, so the table said "every run read the same arrays" of cells trained on other folds (the later ones draw
    them over the new video too). Now refused, naming the video and the runs; the same command again retrains the
    runs made before it."""
    import shutil

    from between_cells import change_after_the_first_cell

    from pipeline.cache_layout import dataset_dir, video_dir

    cfg = _fresh(tmp_path)
    # the same cache with a sixth video in the train split, as `features` would extract it beside the five
    make_cache(tmp_path / "c6", "synth", videos=6, frames=40, splits=["train"] * 4 + ["test", "train"])

    def extract_v05():
        shutil.copytree(video_dir(tmp_path / "c6", "synth", "v05"), video_dir(cfg.cache, "synth", "v05"))
        shutil.copy(dataset_dir(tmp_path / "c6", "synth") / "index.parquet", dataset_dir(cfg.cache, "synth"))

    change_after_the_first_cell(monkeypatch, extract_v05)
    grid, out = ["streams=spatial,temporal"], tmp_path / "abl"
    with pytest.raises(BadInputError, match=r"the cache changed during this ablation: its runs read different data "
                                            r"\(video v05: absent in streams=spatial/fold0, present in "
                                            r"streams=temporal/fold0\); no table is written"):
        ablate(cfg.cache, "synth", grid, out, cfg, folds=2, fold_ids=[0])
    assert not (out / "ablation.md").exists() and not (out / "ablation.csv").exists()
    monkeypatch.undo()
    ablate(cfg.cache, "synth", grid, out, cfg, folds=2, fold_ids=[0])
    videos = {s: json.loads((out / f"streams={s}" / "fold0" / "metrics.json").read_text())["videos"]
              for s in ("spatial", "temporal")}
    assert videos["spatial"] == videos["temporal"] and "v05" in sum(videos["spatial"].values(), [])   # trained again
    assert "labels per video, the same in every run (6 videos)" in (out / "ablation.md").read_text()


def test_a_video_moved_to_the_held_out_split_between_two_runs_of_an_ablation_writes_no_table(tmp_path, monkeypatch):
    """A `features` run after an annotation release that moves a video from train to test between two cells keeps its
    arrays, labels and source: the table compared a cell that trained on it with one scored on it, saying every run
    read the same data. Now refused, naming the video and the runs."""
    from between_cells import change_after_the_first_cell

    cfg = _fresh(tmp_path)

    def move_v03():   # what `features` does for "v03: done; split 'train' -> 'test', as the dataset now says"
        store.open_video(cfg.cache, "synth", "v03", mode="r+").attrs["split"] = "test"
        videos = [f"v0{i}" for i in range(5)]
        store.write_index(cfg.cache, "synth", [store.index_row(cfg.cache, "synth", v) for v in videos])

    change_after_the_first_cell(monkeypatch, move_v03)
    with pytest.raises(BadInputError, match=r"its runs read different data \(split of v03: trained or selected on in "
                                            r"streams=spatial/fold0, held out in streams=temporal/fold0\); no table"):
        ablate(cfg.cache, "synth", ["streams=spatial,temporal"], tmp_path / "abl", cfg, folds=2, fold_ids=[0])
    assert not (tmp_path / "abl" / "ablation.md").exists()


def test_rows_over_fewer_videos_than_the_others_say_so(tmp_path):
    """--skip-unusable leaves a video out of the cells whose input it lacks (here dphase@paper, its update killed on
    v01): those rows were means over fewer videos and other folds than the dphase rows, and the table said every run
    read the same arrays, nothing more. Now a note in ablation.md (and on the console) names the runs and videos."""
    make_cache(tmp_path / "c", "synth", videos=5, frames=40, test_videos=1, variants=("paper",))
    base = TrainConfig(cache=str(tmp_path / "c"), out="unused", **{**TINY, "streams": "temporal", "skip_unusable": True})
    grid, out = ["input=dphase,dphase@paper"], tmp_path / "abl"
    table = ablate(base.cache, "synth", grid, out, base, folds=2, fold_ids=[0])
    assert not any("left out" in n for n in table.attrs["notes"])   # every run read the same videos
    store.mark_stale(store.open_video(base.cache, "synth", "v01", mode="r+"), ["dphase_s0@paper"])   # a killed update
    table = ablate(base.cache, "synth", grid, out, base, folds=2, fold_ids=[0])
    note = ("Runs that left out videos other runs read (--skip-unusable), so their rows are over fewer videos (other "
            "folds, or another held-out set): input=dphase@paper/fold0: v01 (first reason: ")
    line = next((x for x in (out / "ablation.md").read_text().splitlines() if x.startswith("Runs that")), "")
    assert line.startswith(note) and "input=dphase/fold0" not in line and line in table.attrs["notes"]


def test_rows_from_videos_whose_last_update_failed_say_so(tmp_path):
    """A done video whose last `features` run reported an error (its file changed since, the rebuild failed) keeps
    the arrays made before; each run read it and said so in metrics.json's not_updated, but ablation.md said only
    that every run read the same arrays. Now a note (and the console) names the runs, the video and the error."""
    make_cache(tmp_path / "c", "synth", videos=5, frames=40, test_videos=1)
    rows = store.read_index(tmp_path / "c", "synth").to_dict("records")
    error = "/data/v01.mp4: the video decodes to 20 frames, its header says 40"   # as `features` records a failed rebuild
    store.write_index(tmp_path / "c", "synth", [{**r, "error": error} if r["video"] == "v01" else r for r in rows])
    base = TrainConfig(cache=str(tmp_path / "c"), out="unused", **{**TINY, "streams": "temporal"})
    out = tmp_path / "abl"
    table = ablate(base.cache, "synth", ["lr=0.1,0.05"], out, base, folds=2, fold_ids=[0])
    line = next((x for x in (out / "ablation.md").read_text().splitlines() if x.startswith("1 video read as")), "")
    assert line == ("1 video read as cached before its last `features` run, which reported an error (v01: "
                    f"{error}): runs lr=0.05/fold0, lr=0.1/fold0 read the arrays made before, from its file as it was "
                    "then; each run's metrics.json lists it in not_updated. Fix what the error says and run "
                    "`features` again to update it"), (out / "ablation.md").read_text()
    assert line in table.attrs["notes"]


def test_cells_reused_after_an_update_failed_say_so_and_not_once_it_succeeds(tmp_path):
    """A cell trained before a `features` update of one of its videos failed is reused (the same arrays: the failed
    update left them as they were), and its metrics.json, written before, has no not_updated: the table said nothing
    of the video. The reused run now carries what is known of its arrays now, both ways: said once the update
    failed, no longer said once the error is gone."""
    make_cache(tmp_path / "c", "synth", videos=5, frames=40, test_videos=1)
    cache = tmp_path / "c"
    clean = store.read_index(cache, "synth").to_dict("records")
    base = TrainConfig(cache=str(cache), out="unused", **{**TINY, "streams": "temporal"})
    out = tmp_path / "abl"

    def note_after(rows):
        store.write_index(cache, "synth", rows)
        table = ablate(base.cache, "synth", ["lr=0.1"], out, base, folds=2, fold_ids=[0])
        return [n for n in table.attrs["notes"] if n.startswith("1 video read as")]

    assert note_after(clean) == []
    metrics, best = out / "lr=0.1" / "fold0" / "metrics.json", out / "lr=0.1" / "fold0" / "best.pt"
    made = best.stat().st_mtime_ns
    error = "/data/v01.mp4: the video decodes to 20 frames, its header says 40"
    failed = note_after([{**r, "error": error} if r["video"] == "v01" else r for r in clean])
    assert best.stat().st_mtime_ns == made   # reused, not trained again
    assert json.loads(metrics.read_text())["not_updated"] == {"v01": error}   # as the console note says
    assert len(failed) == 1 and f"(v01: {error}): run lr=0.1/fold0 read" in failed[0], failed
    assert failed[0] in (out / "ablation.md").read_text()
    assert note_after(clean) == []   # the update succeeded since (here: the error cleared): no note from the old run
    assert json.loads(metrics.read_text())["not_updated"] == {} and best.stat().st_mtime_ns == made
