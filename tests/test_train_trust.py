"""No score from stale, mixed or leaked data: the trainer checks each video in its group, keys runs by everything
that decides them, reads only what the model uses, and says which architecture and input made each number."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from features.errors import BadInputError
from pipeline import store
from train import checkpoint, data
from train.ablate import ablate
from train.checkpoint import sha256
from train.model import MimamoNet
from train.synth import make_cache
from train.trainer import TrainConfig, loss, split_videos, train

TINY = {"dataset": "synth", "width": 4, "window": 4, "length": 32, "stride": 16, "batch_size": 4, "folds": 2,
        "lr": 0.1, "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False, "epochs": 1}


def _fresh(tmp_path, **kw):
    make_cache(tmp_path / "c", "synth", **{"videos": 5, "frames": 40, "test_videos": 1, **kw})
    return TrainConfig(cache=str(tmp_path / "c"), out=str(tmp_path / "r"), **TINY)


def _set_fp(cache, video, **fps):
    """Change fingerprints in a video's group only (the index keeps the old ones, as after a half-done update)."""
    store.set_fingerprints(store.open_video(cache, "synth", video, mode="r+"), fps)


def test_a_video_unusable_in_its_group_is_refused_or_listed(tmp_path):
    cfg = _fresh(tmp_path)
    store.mark_stale(store.open_video(cfg.cache, "synth", "v01", mode="r+"), ["dphase_s0"])   # a killed update
    with pytest.raises(BadInputError) as e:
        train(replace(cfg, streams="temporal"))
    msg = str(e.value)
    assert "v01" in msg and "dphase_s0 is stale" in msg
    assert f"python cli.py features --dataset synth --cache {cfg.cache} --stages align,motion" in msg
    train(replace(cfg, streams="spatial"))                  # a spatial run does not read the stale array
    m = train(replace(cfg, streams="temporal", skip_unusable=True))
    assert "v01" in m["left_out"] and "stale" in m["left_out"]["v01"]
    assert "v01" not in sum(m["videos"].values(), [])
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["left_out"] == m["left_out"]


def test_an_array_with_two_fingerprints_names_the_array_and_videos(tmp_path):
    cfg = _fresh(tmp_path)
    _set_fp(cfg.cache, "v03", dphase_s1="other-setting")
    with pytest.raises(BadInputError, match=r"'dphase_s1' was made with different settings.*other-setting in v03"):
        train(replace(cfg, streams="temporal"))


def test_a_cache_updated_while_a_run_trains_stops_the_run(tmp_path, monkeypatch):
    """A `features` run that updates a video's labels mid-training (an edited label file): the rest of the run
    would read the new labels under the old fingerprint. The run stops at the end of that epoch and keeps no
    result; the same run on an unchanged cache finishes."""
    from train import report

    cfg = replace(_fresh(tmp_path), streams="temporal", epochs=3, patience=10)
    write_log, epochs = report.write_log, []

    def features_meanwhile(out, history):   # after epoch 1, as a concurrent `features` labels update leaves it
        write_log(out, history)
        epochs.append(len(history))
        if epochs == [1]:   # once
            g = store.open_video(cfg.cache, "synth", "v02", mode="r+")
            g["labels"][:] = -g["labels"][:]
            store.set_fingerprints(g, {"labels": "from-the-edited-file"})

    monkeypatch.setattr(report, "write_log", features_meanwhile)
    with pytest.raises(BadInputError, match=r"the cache changed while this run trained \(v02: labels\)"):
        train(cfg)
    assert epochs == [1] and not (tmp_path / "r" / "metrics.json").exists() and not (tmp_path / "r" / "best.pt").exists()
    m = train(replace(cfg, out=str(tmp_path / "again")))   # on the cache as it is now: no change during it
    assert epochs == [1, 1, 2, 3] and m["epochs_run"] == 3


def test_temporal_model_trains_on_a_cache_without_resnet50(tmp_path):
    cfg = _fresh(tmp_path, spatial=False)     # as `features --stages align,motion` makes it
    m = train(replace(cfg, streams="temporal"))
    assert np.isfinite(m["ccc_arousal"]) and "resnet50" not in m["fingerprints"]
    with pytest.raises(BadInputError, match="resnet50 is missing.*--stages align,spatial"):
        train(replace(cfg, streams="spatial"))


def test_the_loader_reads_only_the_arrays_the_model_uses(tmp_path):
    cfg = _fresh(tmp_path)
    rows = data.video_table(cfg.cache, "synth")
    for streams, want in (("spatial", {"resnet50"}), ("temporal", {"dphase_s0", "dphase_s1"}),
                          ("both", {"resnet50", "dphase_s0", "dphase_s1"})):
        ds = data.SequenceDataset(cfg.cache, "synth", rows, window=4, streams=streams, length=32)
        for i in range(len(ds)):
            ds[i]
        read = {name for _, name, _ in ds.reader.lru}
        assert read == want | {"valid", "labels"}, streams


def test_resume_compares_the_whole_configuration_and_the_data(tmp_path):
    cfg = replace(_fresh(tmp_path), streams="temporal", epochs=3, stop_after=1)
    assert train(cfg).get("interrupted")
    resume = replace(cfg, resume=True, stop_after=None)
    for change, key in (({"lr": 0.05}, "config.lr"), ({"batch_size": 2}, "config.batch_size"),
                        ({"milestones": (1,)}, "config.milestones"), ({"seed": 1}, "config.seed"),
                        ({"window": 6}, "config.window"), ({"patience": 1}, "config.patience")):
        with pytest.raises(BadInputError, match=key.replace(".", r"\.")):
            train(replace(resume, **change))
    for v in ("v00", "v01", "v02", "v03", "v04"):        # every video's ΔPhase recomputed under another setting
        _set_fp(cfg.cache, v, dphase_s0="recomputed")
    with pytest.raises(BadInputError, match=r"fingerprints\.dphase_s0: synth-d0 -> recomputed"):
        train(resume)
    for v in ("v00", "v01", "v02", "v03", "v04"):
        _set_fp(cfg.cache, v, dphase_s0="synth-d0")
    m = train(replace(resume, num_workers=1, cache_mb=16, quiet=False))   # runtime knobs may change
    assert m["epochs_run"] == 3


def _set_source(cache, video, identity):
    """A group as `features` leaves it after extracting a replaced video file again: same fingerprints, new source."""
    store.open_video(cache, "synth", video, mode="r+").attrs["source_identity"] = identity


def test_resume_and_reuse_see_a_video_extracted_again_from_another_file(tmp_path, capfd):
    cfg = replace(_fresh(tmp_path), streams="temporal", epochs=2, stop_after=1)
    for v in ("v00", "v01", "v02", "v03", "v04"):
        _set_source(cfg.cache, v, [1000, 17])
    assert train(cfg).get("interrupted")
    _set_source(cfg.cache, "v01", [2000, 18])     # v01.mp4 replaced, then `features` rebuilt its group
    with pytest.raises(BadInputError, match=r"sources\.v01: \[.*1000, 17.* -> \[.*2000, 18"):
        train(replace(cfg, resume=True, stop_after=None))
    done = replace(cfg, stop_after=None, reuse=True)
    train(done)
    stamp = (tmp_path / "r" / "metrics.json").stat().st_mtime_ns
    _set_source(cfg.cache, "v01", [3000, 19])
    capfd.readouterr()
    train(done)
    err = capfd.readouterr().err
    assert "sources.v01" in err and "training it again" in err
    assert (tmp_path / "r" / "metrics.json").stat().st_mtime_ns != stamp
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["identity"]["sources"]["v01"][1] == [3000, 19]


def test_a_run_of_an_earlier_trainer_version_is_neither_reused_nor_resumed(tmp_path, capfd):
    """An ablation cell or sub-run finished by a mimamo whose training or scoring computed other numbers from the
    same settings and data: reused beside runs of this version, it would mix two codes' numbers in one table."""
    cfg = replace(_fresh(tmp_path), streams="temporal", epochs=2, stop_after=1)
    assert train(cfg).get("interrupted")
    last = tmp_path / "r" / "last.pt"
    ck = checkpoint.load(last)
    ck["identity"]["trainer_version"] = "0"
    checkpoint.save(ck, last)
    with pytest.raises(BadInputError, match=r"trainer_version: 0 -> 1"):
        train(replace(cfg, resume=True, stop_after=None))
    done = replace(cfg, stop_after=None, reuse=True)
    train(done)
    path = tmp_path / "r" / "metrics.json"
    saved = json.loads(path.read_text())
    assert saved["identity"]["trainer_version"] == "1"
    del saved["identity"]["trainer_version"]             # as a run made before the version was recorded
    path.write_text(json.dumps(saved))
    capfd.readouterr()
    train(done)
    err = capfd.readouterr().err
    assert "trainer_version: None -> 1" in err and "training it again" in err
    assert json.loads(path.read_text())["identity"]["trainer_version"] == "1"


def test_resume_checks_the_init_checkpoints_by_content(tmp_path):
    cfg = _fresh(tmp_path)
    sp = train(replace(cfg, streams="spatial", out=str(tmp_path / "sp")))
    tp = train(replace(cfg, streams="temporal", out=str(tmp_path / "tp")))
    assert sp["videos"] == tp["videos"]
    both = replace(cfg, streams="both", init_spatial=str(tmp_path / "sp" / "best.pt"),
                   init_temporal=str(tmp_path / "tp" / "best.pt"), epochs=2, stop_after=1)
    assert train(both).get("interrupted")
    train(replace(cfg, streams="spatial", out=str(tmp_path / "sp"), lr=0.05))   # same path and videos, other weights
    with pytest.raises(BadInputError, match=r"init\.spatial"):
        train(replace(both, resume=True, stop_after=None))


def test_init_checkpoint_that_saw_held_out_videos_is_refused(tmp_path):
    make_cache(tmp_path / "c", "synth", videos=6, frames=40, test_videos=0)
    cfg = TrainConfig(cache=str(tmp_path / "c"), out=str(tmp_path / "r"), **{**TINY, "folds": 3})
    train(replace(cfg, streams="spatial", out=str(tmp_path / "sp")))           # fold 0
    train(replace(cfg, streams="temporal", out=str(tmp_path / "tp")))
    with pytest.raises(BadInputError, match="trained or selected on videos this run holds out"):
        train(replace(cfg, streams="both", fold=1, init_spatial=str(tmp_path / "sp" / "best.pt"),
                      init_temporal=str(tmp_path / "tp" / "best.pt")))


def test_init_checkpoint_that_learnt_from_labels_changed_since_is_refused(tmp_path):
    cfg = _fresh(tmp_path)
    train(replace(cfg, streams="spatial", out=str(tmp_path / "sp")))
    train(replace(cfg, streams="temporal", out=str(tmp_path / "tp")))
    both = replace(cfg, streams="both", init_spatial=str(tmp_path / "sp" / "best.pt"),
                   init_temporal=str(tmp_path / "tp" / "best.pt"), out=str(tmp_path / "both"))
    seen = json.loads((tmp_path / "sp" / "metrics.json").read_text())["videos"]["train"][0]
    _set_fp(cfg.cache, seen, labels="labels-fixed")   # a features run after a label fix
    with pytest.raises(BadInputError, match=rf"the spatial model learnt from labels that have changed since \(1 "
                                            rf"video\(s\): {seen}; {seen}: synth-l -> labels-fixed\)"):
        train(both)
    _set_fp(cfg.cache, seen, labels="synth-l")
    assert train(both)["init"]                          # the same labels again: accepted


def test_a_failed_unlabelled_entry_does_not_stop_training_a_failed_labelled_one_does(tmp_path):
    """An ABAW test list entry that failed (its video missing) is never read by training: it must not stop a run on
    the annotated sets, as it did; a failed annotated video still does (it changes what is trained on)."""
    cfg = _fresh(tmp_path)
    rows = [store.index_row(cfg.cache, "synth", v) for v in store.read_index(cfg.cache, "synth").video]

    def failed(video, labelled):
        return {"video": video, "split": "test" if not labelled else "train", "status": "failed", "n_frames": 0,
                "error": f"no video file for {video}", "labelled": labelled}

    store.write_index(cfg.cache, "synth", [*rows, failed("x-test-entry", False)])
    assert train(cfg)["videos"]["train"]   # trained: the unlabelled entry is not one of its (6 with x-annotated)
    store.write_index(cfg.cache, "synth", [*rows, failed("x-test-entry", False), failed("x-annotated", True)])
    with pytest.raises(BadInputError, match=r"1 of 6 videos cannot be read: video 'x-annotated' has no features in "
                                            r"the cache \(extraction failed: no video file for x-annotated\)"):
        train(replace(cfg, out=str(tmp_path / "r2")))


def test_ablate_reruns_cells_made_under_other_settings_or_data(tmp_path, capfd):
    cfg = _fresh(tmp_path, extras=True)
    base = replace(cfg, streams="temporal")
    grid = ["input=dphase,flow"]
    ablate(cfg.cache, "synth", grid, tmp_path / "abl", base, folds=2, fold_ids=[0])
    done = {i: tmp_path / "abl" / f"input={i}" / "fold0" / "metrics.json" for i in ("dphase", "flow")}
    stamp = {i: p.stat().st_mtime_ns for i, p in done.items()}
    capfd.readouterr()
    ablate(cfg.cache, "synth", grid, tmp_path / "abl", base, folds=2, fold_ids=[0])
    assert {i: p.stat().st_mtime_ns for i, p in done.items()} == stamp            # same settings: reused
    assert "training it again" not in capfd.readouterr().err
    for v in ("v00", "v01", "v02", "v03", "v04"):
        _set_fp(cfg.cache, v, flow="flow-recomputed")
    ablate(cfg.cache, "synth", grid, tmp_path / "abl", base, folds=2, fold_ids=[0])
    err = capfd.readouterr().err
    assert done["dphase"].stat().st_mtime_ns == stamp["dphase"] and done["flow"].stat().st_mtime_ns != stamp["flow"]
    assert "input=flow/fold0: made with other settings or data (fingerprints.flow: synth-f -> flow-recomputed)" in err
    ablate(cfg.cache, "synth", grid, tmp_path / "abl", replace(base, lr=0.05), folds=2, fold_ids=[0])
    assert "config.lr: 0.1 -> 0.05" in capfd.readouterr().err
    assert json.loads(done["dphase"].read_text())["config"]["lr"] == 0.05


def test_an_ablation_whose_cache_changed_between_its_runs_writes_no_table(tmp_path, monkeypatch):
    """A `features` run between two cells (here: the labels fixed after the spatial cell) leaves each run consistent
    but the table comparing runs made on different data: refused; the same command again retrains what is stale."""
    from between_cells import change_after_the_first_cell

    cfg = _fresh(tmp_path)

    def fix_labels():
        for v in ("v00", "v01", "v02", "v03", "v04"):
            _set_fp(cfg.cache, v, labels="labels-fixed")

    change_after_the_first_cell(monkeypatch, fix_labels)
    grid, out = ["streams=spatial,temporal"], tmp_path / "abl"
    with pytest.raises(BadInputError, match=r"the cache changed during this ablation: its runs read different data "
                                            r"\(labels of v00: synth-l in streams=spatial/fold0, labels-fixed in "
                                            r"streams=temporal/fold0; labels of v01: .*; and 2 more\); no table is "
                                            r"written"):
        ablate(cfg.cache, "synth", grid, out, cfg, folds=2, fold_ids=[0])
    assert not (out / "ablation.md").exists() and not (out / "ablation.csv").exists()
    monkeypatch.undo()
    ablate(cfg.cache, "synth", grid, out, cfg, folds=2, fold_ids=[0])
    md = (out / "ablation.md").read_text()
    read = {s: json.loads((out / f"streams={s}" / "fold0" / "metrics.json").read_text())["labels_by_video"]
            for s in ("spatial", "temporal")}
    assert read["spatial"] == read["temporal"] and read["spatial"]["v00"] == "labels-fixed"   # trained again
    assert f"Data: synth in {tmp_path / 'c'}; every run read the same arrays (fingerprints: " in md
    assert "labels per video, the same in every run (5 videos)" in md and "resnet50 synth-r" in md


def test_runs_over_other_video_sets_read_the_same_labels():
    """Cells that leave out other videos (--skip-unusable, per input) have other label digests of the same labels:
    not a change; one video's labels differing between runs is; runs from before the per-video record fall back to
    the digest."""
    from train.videos import one_data

    def run(digest, **labels):
        return {"fingerprints": {"resnet50": "r", "labels": digest}, "labels_by_video": labels}

    read = one_data({"a": run("d1", v0="x", v1="y"), "b": run("d2", v0="x")}, None, "ablation")
    assert read == {"resnet50": "r", "labels": "per video, the same in every run (2 videos)"}
    with pytest.raises(BadInputError, match=r"\(labels of v0: x in a, z in b\)"):
        one_data({"a": run("d1", v0="x", v1="y"), "b": run("d1", v0="z", v1="y")}, None, "ablation")
    old = {"fingerprints": {"resnet50": "r", "labels": "d1"}}
    assert one_data({"a": old, "b": run("d1", v0="x")}, None, "ablation") == {"labels": "d1", "resnet50": "r"}
    # a video file replaced and extracted again between two runs: every fingerprint the same, other frames
    a, b = run("d1", v0="x"), run("d1", v0="x")
    a["identity"] = {"sources": {"v0": [40, "sha256:aaa", {"faces": "video"}], "v1": [9, "sha256:c", {}]}}
    b["identity"] = {"sources": {"v0": [40, "sha256:bbb", {"faces": "video"}]}}
    with pytest.raises(BadInputError, match=r"source of v0: .*sha256:aaa.* in a, .*sha256:bbb.* in b"):
        one_data({"a": a, "b": b}, None, "ablation")
    b["identity"]["sources"]["v0"][1] = "sha256:aaa"
    assert "source of v0" not in one_data({"a": a, "b": b}, None, "ablation")
    # the videos a run had: read, or left out with a reason (--skip-unusable per input), over the same splits
    def had(read, left_out=(), splits=None):
        return {**run("d1", v0="x"), "left_out": dict.fromkeys(left_out, "why"),
                "identity": {"videos": {"train": read, "val": [], "test": []}, "config": {"splits": splits}}}

    assert one_data({"a": had(["v0", "v1"]), "b": had(["v0"], ["v1"])}, None, "ablation")
    with pytest.raises(BadInputError, match=r"\(video v1: present in a, absent in b\)"):
        one_data({"a": had(["v0", "v1"]), "b": had(["v0"])}, None, "ablation")
    assert one_data({"a": had(["v0", "v1"]), "b": had(["v0"], splits=["train"])}, None, "ablation")
    # and held it out: compared between runs that hold out the same split, not between folds of cross-validation
    def held(test, train, split="test", left_out=()):
        m = had(train, left_out)
        m["identity"].update(videos={"train": train, "val": [], "test": test}, protocol={"held_out": split})
        return m

    with pytest.raises(BadInputError, match=r"\(split of v1: held out in a, trained or selected on in b\)"):
        one_data({"a": held(["v1"], ["v0"]), "b": held([], ["v0", "v1"])}, None, "ablation")
    assert one_data({"a": held(["v1"], ["v0"], "fold 0"), "b": held(["v0"], ["v1"], "fold 1")}, None, "ablation")
    assert one_data({"a": held(["v1"], ["v0"]), "b": held([], ["v0"], left_out=["v1"])}, None, "ablation")


def test_ablation_tables_count_only_folds_with_a_finite_score(tmp_path):
    make_cache(tmp_path / "c", "synth", videos=3, frames=40, test_videos=0)   # one video per fold
    cache = tmp_path / "c"
    rows = [store.index_row(cache, "synth", v) for v in store.done_videos(cache, "synth").video]
    for r in split_videos(rows, 3, 0, 0)["test"]:   # fold 0's held-out video: one labelled frame, no CCC
        g = store.open_video(cache, "synth", r["video"], mode="r+")
        lab = g["labels"][:]
        lab[np.arange(len(lab)) != 1] = np.nan        # still a labelled video (frame 1), so the folds stay,
        g["labels"][:] = lab                          # but one scored frame: no CCC (a video without any face
        # would be left out by train, changing the folds)
    base = TrainConfig(streams="spatial", **TINY)
    table = ablate(cache, "synth", ["width=4"], tmp_path / "abl", base, folds=3, fold_ids=[0, 1])
    one = json.loads((tmp_path / "abl" / "width=4" / "fold1" / "metrics.json").read_text())
    assert table.folds[0] == 1 and table.nan_folds[0] == 1
    assert table.ccc_arousal[0] == pytest.approx(one["ccc_arousal"])
    assert "| 1 (1 NaN) |" in (tmp_path / "abl" / "ablation.md").read_text()


def test_video_level_loss_ignores_sequences_without_a_valid_frame():
    torch.manual_seed(0)
    model = MimamoNet(streams="spatial").eval()
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[2] = False                                          # a sequence of frames without a face
    batch = {"rgb": torch.randn(4, 8, 2048), "mask": mask, "vlabel": torch.tensor([[.5, -.2], [-.3, .1],
                                                                                   [.9, .9], [.1, .4]])}
    keep = [0, 1, 3]
    without = {k: v[keep] for k, v in batch.items()}
    got = loss(model, batch, 4, "cpu", "video")
    assert torch.allclose(got, loss(model, without, 4, "cpu", "video"))


def test_input_variants_and_architectures_are_named_in_metrics_and_tables(tmp_path):
    cfg = _fresh(tmp_path, variants=("paper",))
    base = replace(cfg, streams="temporal")
    table = ablate(cfg.cache, "synth", ["input=dphase,dphase@paper"], tmp_path / "abl", base, folds=2, fold_ids=[0])
    assert list(table.input) == ["dphase", "dphase@paper"] and list(table.arch) == ["paper", "paper"]
    m = json.loads((tmp_path / "abl" / "input=dphase@paper" / "fold0" / "metrics.json").read_text())
    assert m["input"] == "dphase@paper" and m["fingerprints"]["dphase_s0@paper"] == "synth-d0@paper"
    assert "dphase_s0" not in m["fingerprints"]
    csv = (tmp_path / "abl" / "ablation.csv").read_text().splitlines()
    assert csv[0].startswith("input,arch,") and csv[2].startswith("dphase@paper,paper,")
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| input | arch |" in md and "| dphase@paper | paper |" in md
    rel = train(replace(base, arch="released", out=str(tmp_path / "rel")))
    assert rel["arch"] == "released" and np.isfinite(rel["ccc_arousal"])
    model = torch.load(tmp_path / "rel" / "best.pt", weights_only=True)["model"]
    convs = [k for k, v in model.items() if k.startswith("temporal.blocks.") and v.ndim == 4]
    assert len({k.split(".")[2] for k in convs}) == 3 and len(convs) == 6      # 3 blocks, 6 conv layers
    sp = ablate(cfg.cache, "synth", ["streams=spatial"], tmp_path / "abl2", base, folds=2, fold_ids=[0])
    assert sp.arch[0] == "-" and sp.input[0] == "-"                          # no temporal stream


def test_cli_validates_input_variants(tmp_path):
    cfg = _fresh(tmp_path, variants=("paper",))
    args = ["train", "--cache", cfg.cache, "--dataset", "synth", "--streams", "temporal", "--epochs", "1", "--lr",
            "0.1", "--folds", "2", "--width", "4", "--window", "4", "--num-workers", "0", "--threads", "1",
            "--no-plots", "--out", str(tmp_path / "r")]
    r = CliRunner().invoke(main, args + ["--input", "dphase@paper"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["input"] == "dphase@paper"
    for bad in ("dphase@../x", "resnet", "flow@"):
        r = CliRunner().invoke(main, args + ["--input", bad])
        assert r.exit_code == 2 and "--input" in r.output, (bad, r.output)
    r = CliRunner().invoke(main, args + ["--input", "dphase@mw9"])           # a variant the cache lacks
    assert r.exit_code == 2 and "dphase_s0@mw9 is missing" in r.output and "--motion-variant mw9" in r.output


def test_ablation_two_stream_cells_start_from_sibling_cells_of_the_same_identity(tmp_path, capfd):
    cfg = _fresh(tmp_path)
    grid = ["streams=spatial,temporal,both"]
    ablate(cfg.cache, "synth", grid, tmp_path / "abl", cfg, folds=2, fold_ids=[0])
    cell = {s: tmp_path / "abl" / f"streams={s}" / "fold0" for s in ("spatial", "temporal", "both")}
    both = json.loads((cell["both"] / "metrics.json").read_text())
    assert both["init"] == {p: str((cell[p] / "best.pt").resolve()) for p in ("spatial", "temporal")}
    assert not (cell["both"] / "spatial").exists()                # no second copy of the single streams
    stamp = {s: (c / "metrics.json").stat().st_mtime_ns for s, c in cell.items()}
    for v in ("v00", "v01", "v02", "v03", "v04"):                # ΔPhase recomputed: temporal and both are stale
        _set_fp(cfg.cache, v, dphase_s0="recomputed")
    capfd.readouterr()
    ablate(cfg.cache, "synth", grid, tmp_path / "abl", cfg, folds=2, fold_ids=[0])
    err = capfd.readouterr().err
    now = {s: (c / "metrics.json").stat().st_mtime_ns for s, c in cell.items()}
    assert now["spatial"] == stamp["spatial"] and now["temporal"] != stamp["temporal"] and now["both"] != stamp["both"]
    assert "streams=both/fold0: made with other settings or data (fingerprints.dphase_s0: synth-d0 -> recomputed;" \
           in err and "init.temporal" in err
    both = json.loads((cell["both"] / "metrics.json").read_text())
    assert both["identity"]["init"]["temporal"] == sha256(cell["temporal"] / "best.pt")


def test_init_checkpoint_that_learnt_from_a_video_since_replaced_is_refused(tmp_path):
    cfg = replace(_fresh(tmp_path), folds=3)
    for v in ("v00", "v01", "v02", "v03", "v04"):
        _set_source(cfg.cache, v, [1000, 17])
    sp = train(replace(cfg, streams="spatial", out=str(tmp_path / "sp")))
    tp = str(tmp_path / "tp" / "best.pt")
    train(replace(cfg, streams="temporal", out=str(tmp_path / "tp")))
    both = replace(cfg, streams="both", init_spatial=str(tmp_path / "sp" / "best.pt"), init_temporal=tp)
    seen = sp["videos"]["train"][0]
    _set_source(cfg.cache, seen, [2000, 18])     # its video file replaced, then `features` rebuilt its group
    with pytest.raises(BadInputError, match=rf"spatial model learnt from 1 video.*{seen}: \[.*1000, 17.* -> \[.*2000, 18"):
        train(both)
    _set_source(cfg.cache, seen, [1000, 17])     # the same source again: the init checks pass
    assert "ccc_arousal" in train(both)
