"""A run folder holds one run's files: scores only from best.pt, nothing resumed from mixed data, no files of an
older run beside a new one's, and nothing a kill can leave looking finished."""
from dataclasses import replace

import pytest
import torch

from features.errors import BadInputError
from pipeline import store
from train import checkpoint, report
from train.run_folder import OUTPUTS
from train.run_lock import LOCK
from train.synth import make_cache
from train.trainer import TrainConfig, finalize, fit, prepare, start, train

TINY = {"dataset": "synth", "width": 4, "window": 4, "length": 32, "stride": 16, "batch_size": 4, "folds": 2,
        "lr": 0.1, "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False,
        "streams": "temporal", "patience": 10}
SCORES = ("ccc_arousal", "ccc_valence", "best_epoch", "epochs_run")


def _cfg(tmp_path, **kw) -> TrainConfig:
    make_cache(tmp_path / "c", "synth", videos=5, frames=40, test_videos=1)
    return TrainConfig(cache=str(tmp_path / "c"), out=str(tmp_path / "r"), **{**TINY, **kw})


def test_a_resume_whose_best_pt_is_gone_is_refused_or_trained_afresh(tmp_path, capfd):
    """last.pt names a best epoch whose best.pt is gone (same_data deleted it, or a user): the resumed epochs need
    not beat it, so no new best.pt would come and the last weights were scored under the best epoch's name."""
    cfg = _cfg(tmp_path, epochs=3, stop_after=2)
    assert train(cfg).get("interrupted")
    best = checkpoint.load(tmp_path / "r" / "last.pt")["state"]["best_epoch"]
    assert best >= 1
    (tmp_path / "r" / "best.pt").unlink()
    with pytest.raises(BadInputError, match=rf"cannot resume: the best epoch it records \({best}\) has no best\.pt"):
        train(replace(cfg, resume=True, stop_after=None))
    full = train(replace(cfg, stop_after=None, out=str(tmp_path / "full")))
    capfd.readouterr()
    m = train(replace(cfg, stop_after=None, reuse=True))    # an ablation cell: trained again, saying why
    assert f"an unfinished run, but the best epoch it records ({best}) has no best.pt; starting afresh" \
        in capfd.readouterr().err
    assert {k: m[k] for k in SCORES} == {k: full[k] for k in SCORES}
    assert checkpoint.load(tmp_path / "r" / "best.pt")["epoch"] == m["best_epoch"]


def test_finalize_scores_only_the_best_epochs_weights(tmp_path):
    cfg = _cfg(tmp_path, epochs=2)
    run = prepare(cfg)
    f = start(run)
    assert fit(run, f)
    path = tmp_path / "r" / "best.pt"
    ck = checkpoint.load(path)
    checkpoint.save({**ck, "epoch": 99}, path)
    with pytest.raises(BadInputError, match=rf"best\.pt is not of the best epoch it records "
                                            rf"\({f.state['best_epoch']}\): it holds epoch 99, so its held-out"):
        finalize(run, f)
    path.unlink()
    with pytest.raises(BadInputError, match=r"has no best\.pt, so its held-out scores cannot be made"):
        finalize(run, f)
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_a_run_stopped_by_a_cache_change_leaves_nothing_to_resume(tmp_path, monkeypatch):
    """The labels change after epoch 1 and are then restored: the identity is equal again, but last.pt's weights
    (and its best epoch, whose best.pt is gone) came from that run; a resume trains afresh, as if uninterrupted."""

    cfg = _cfg(tmp_path, epochs=3)
    write_log, g = report.write_log, store.open_video(cfg.cache, "synth", "v02", mode="r+")

    def features_meanwhile(out, history):
        write_log(out, history)
        g["labels"][:] = -g["labels"][:]
        store.set_fingerprints(g, {"labels": "from-the-edited-file"})

    monkeypatch.setattr(report, "write_log", features_meanwhile)
    with pytest.raises(BadInputError, match=r"the cache changed while this run trained"):
        train(cfg)
    monkeypatch.undo()
    assert not {"best.pt", "last.pt", "metrics.json"} & {p.name for p in (tmp_path / "r").iterdir()}
    g["labels"][:] = -g["labels"][:]                       # the label fix reverted: the data it began on again
    store.set_fingerprints(g, {"labels": "synth-l"})
    m = train(replace(cfg, resume=True))
    full = train(replace(cfg, out=str(tmp_path / "full")))
    assert {k: m[k] for k in SCORES} == {k: full[k] for k in SCORES} and m["epochs_run"] == 3


def test_resume_of_a_finished_run_without_last_pt_returns_it_and_a_fresh_run_leaves_no_old_file(tmp_path, capfd):
    """--resume with no last.pt deleted a finished run and trained again, leaving its predictions, log and plots
    beside the new run's files; a fresh run removed only best.pt, last.pt and metrics.json."""
    cfg = _cfg(tmp_path, epochs=2, plots=True)
    done = train(cfg)
    out = tmp_path / "r"
    (out / "last.pt").unlink()          # e.g. removed to save space once the run finished

    def outputs():   # the run's files; its lock file (train/run_lock.py) records each run's holder
        return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != LOCK}

    stamp = outputs()
    capfd.readouterr()
    again = train(replace(cfg, resume=True))
    assert "finished already (no last.pt to resume from)" in capfd.readouterr().err
    assert {k: again[k] for k in SCORES} == {k: done[k] for k in SCORES}
    assert outputs() == stamp      # nothing deleted or rewritten
    with pytest.raises(BadInputError, match=r"--resume of a finished run made with a different configuration or "
                                            r"data \(config\.lr: 0\.1 -> 0\.05\)"):
        train(replace(cfg, resume=True, lr=0.05))
    assert outputs() == stamp
    assert train(replace(cfg, lr=0.05, plots=False, stop_after=1)).get("interrupted")   # afresh, then killed
    assert set(outputs()) == {"best.pt", "last.pt", "log.csv", "log.jsonl"}


class Killed(BaseException):
    """A kill at a chosen point (not an Exception: nothing in the trainer handles it, as nothing runs after a kill)."""


def test_a_kill_while_the_outputs_are_written_leaves_no_finished_looking_run(tmp_path, monkeypatch, capfd):
    """metrics.json was written first and in place: a kill after it left a run that reuse took as finished, its
    predictions missing or cut short."""

    cfg = _cfg(tmp_path, epochs=2, plots=True)
    out, real = tmp_path / "r", report.plot_predictions

    def killed_mid_write(path, *args, **kw):
        real(path, *args, **kw)
        path.write_bytes(path.read_bytes()[:100])     # what a kill during the write leaves
        raise Killed

    monkeypatch.setattr(report, "plot_predictions", killed_mid_write)
    with pytest.raises(Killed):
        train(cfg)
    monkeypatch.undo()
    assert not (out / "metrics.json").exists() and not (out / "predictions.png").exists()
    capfd.readouterr()
    m = train(replace(cfg, reuse=True))       # resumed from last.pt: scored and written again
    assert "reused" not in capfd.readouterr().err and m["epochs_run"] == 2
    assert {p.name for p in out.iterdir()} == {*OUTPUTS, LOCK}   # whole files, no temporary one left
    assert (out / "predictions.png").read_bytes()[-8:] == b"IEND\xaeB`\x82"   # a PNG's last chunk


def test_an_unreadable_metrics_json_is_a_run_to_train_again(tmp_path, capfd):
    cfg = _cfg(tmp_path, epochs=1, reuse=True)
    done = train(cfg)
    path = tmp_path / "r" / "metrics.json"
    path.write_text(path.read_text()[:200])       # cut short (by a kill, with an older mimamo, or a full disk)
    capfd.readouterr()
    m = train(cfg)
    assert f"{path}: unreadable (cut short by a kill?), so the run is not finished; training it again" \
        in capfd.readouterr().err
    assert {k: m[k] for k in SCORES} == {k: done[k] for k in SCORES}
    assert report.read_metrics(path)["ccc_arousal"] == m["ccc_arousal"]


def test_each_stretch_of_epochs_records_its_threads_and_a_resume_under_others_says_so(tmp_path, capfd):
    """--threads is runtime (a resume may land on another node) but changes the numbers: metrics.json's config held
    only the last invocation's count, so a run trained under 1 and resumed under 2 said 2 throughout."""
    cfg = _cfg(tmp_path, epochs=3, stop_after=2)              # threads 1
    assert train(cfg).get("interrupted")
    capfd.readouterr()
    before = torch.get_num_threads()
    try:
        m = train(replace(cfg, stop_after=None, resume=True, threads=2))
    finally:
        torch.set_num_threads(before)
    assert ("resumed under 2 torch thread(s) on cpu, where epochs 1-2 ran under 1 on cpu: the resumed epochs will "
            "not equal an uninterrupted run's bit for bit") in capfd.readouterr().err
    runs = [{"epochs": [1, 2], "threads": 1, "device": "cpu"}, {"epochs": [3, 3], "threads": 2, "device": "cpu"}]
    assert m["threads_used"] == runs and m["threads_scored"] == 2
    assert report.read_metrics(tmp_path / "r" / "metrics.json")["threads_used"] == runs
    assert checkpoint.load(tmp_path / "r" / "last.pt")["state"]["threads_used"] == runs
    same = replace(cfg, out=str(tmp_path / "same"), stop_after=1)
    assert train(same).get("interrupted")
    capfd.readouterr()
    m = train(replace(same, stop_after=None, resume=True))      # the same count: nothing to say
    assert "torch thread" not in capfd.readouterr().err
    assert [r["epochs"] for r in m["threads_used"]] == [[1, 1], [2, 3]] and m["threads_scored"] == 1
