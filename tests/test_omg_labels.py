"""Every OMG utterance the CSVs name, or that sits beside them on disk, is accounted for between the CSV and the
numbers `train` and `predict` print.

Found silent before: a labelled row whose arousal or valence read as 'nan' or 'inf' was extracted with that label and
then passed over by training and scoring (which keep finite labels); the clips of omg_TestVideos_WithoutLabels.csv
that omg_TestVideos_WithLabels.csv has no row for were never read, so the test split was scored without them; clips
on disk in no CSV were not extracted; a row after a blank line was named a line too early; `predict` counted an
utterance without a face among "the N labelled videos" it scored. Already said, and kept so: an empty cell (the row
fails), a clip whose file is missing (fails at extraction), a clip with no face (left out), a row repeated across
splits (the second fails).

Real clips (OpenCV), the real `features` command line (a subprocess with a LocalCluster), a real Zarr cache, and
real training and prediction.
"""
from __future__ import annotations

import csv
import json
import shlex
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from synth_video import write_face_video
from test_cli_input import cli, no_traceback

from pipeline import extract, graph, store
from pipeline.manifest import VideoEntry, get_dataset, list_videos
from train.predict import predict_cache
from train.trainer import TrainConfig, train

HEAD = ["link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote"]
TINY = {"dataset": "omg", "streams": "temporal", "width": 4, "window": 4, "length": 8, "batch_size": 4, "folds": 2,
        "lr": 0.1, "milestones": (100,), "num_workers": 0, "threads": 1, "quiet": True, "plots": False, "epochs": 1,
        "skip_unusable": True}


def _csv(path: Path, head: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([head, *rows])


def _row(video: str, utterance: str, arousal: str = "0.5", valence: str = "0.1") -> list[str]:
    return ["l", "0", "1", video, utterance, arousal, valence, "3"]


def build_root(root: Path) -> Path:
    """An OMG root: train rows with good labels and a 'nan' one, a labelled test CSV that lacks one clip of the
    unlabelled test CSV, a clip with no face, and a clip in no CSV."""
    clips = {"vA": ["u1", "u2", "u9"], "vB": ["u1", "u2"], "vC": ["u1", "u2"], "vE": ["u1"], "vT": ["u1", "u2", "u3"]}
    for k, (video, utterances) in enumerate(clips.items()):
        (root / "videos" / video).mkdir(parents=True)
        for j, u in enumerate(utterances):
            write_face_video(root / "videos" / video / f"{u}.mp4", 12, size=(160, 120), fps=10.0, seed=3 * k + j,
                             no_face=(0, 12) if video == "vE" else None)
    labels = [("0.5", "0.1"), ("0.2", "0.4"), ("0.3", "-0.3"), ("0.1", "0.2"), ("0.6", "0.5")]
    good = [_row(v, f"{u}.mp4", *labels[k]) for k, (v, u) in enumerate(
        [("vA", "u1"), ("vA", "u2"), ("vB", "u1"), ("vB", "u2"), ("vC", "u1")])]
    _csv(root / "omg_TrainVideos.csv", HEAD, good + [_row("vC", "u2.mp4", "nan"), _row("vE", "u1.mp4")])
    _csv(root / "omg_TestVideos_WithLabels.csv", HEAD, [_row("vT", "u1.mp4", "0.2", "0.3"),
                                                       _row("vT", "u2.mp4", "0.4", "-0.1")])
    _csv(root / "omg_TestVideos_WithoutLabels.csv", HEAD[:5], [_row("vT", f"u{j}.mp4")[:5] for j in (1, 2, 3)])
    return root


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The root, its cache (align, motion) made by `features`, its output, and one entry added by the library whose
    label is NaN (as a cache made before the lister refused such rows holds one)."""
    base = tmp_path_factory.mktemp("omg_labels")
    root, cache = build_root(base / "omg"), base / "cache"
    r = cli("features", "--dataset", "omg", "--root", root, "--cache", cache, "--stages", "align,motion",
            "--workers", "1", "--no-progress", cwd=base)
    no_traceback(r)
    assert r.returncode == 1, r.stdout + r.stderr[-3000:]     # the 'nan' row fails
    nan = VideoEntry("vN__u1", root / "videos" / "vB" / "u1.mp4", "train", video_labels={"arousal": float("nan"),
                                                                                         "valence": 0.1})
    s = extract.Settings(stages=("align", "motion"))
    assert graph.run([nan], cache, "omg", s, workers=1, progress=False, echo=lambda *a: None).rows[0]["status"] == "done"
    return root, cache, r.stdout


def test_rows_without_a_finite_label_fail_naming_the_file_the_line_and_the_column(tmp_path):
    rows = [_row("a", "u1.mp4"), _row("a", "u2.mp4", "nan"), _row("a", "u3.mp4", "0.1", "-inf"),
            _row("a", "u4.mp4", ""), _row("a", "u5.mp4", "0.1", "x"), ["l", "0", "1", "a", "u6.mp4", "0.1"]]
    with open(tmp_path / "omg_TrainVideos.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([HEAD, rows[0]])
        fh.write("\r\n")                                      # a blank line: the lines after it keep their numbers
        w.writerows(rows[1:])
    entries = list_videos(get_dataset("omg", root=tmp_path))
    assert [e.video for e in entries if e.problem is None] == ["a__u1"]
    table = tmp_path / "omg_TrainVideos.csv"
    assert sorted(e.problem.split(" (")[0] for e in entries if e.problem) == [
        f"{table}: line 4: column arousal: 'nan' is not a finite number",
        f"{table}: line 5: column valence: '-inf' is not a finite number",
        f"{table}: line 6: column arousal is empty",
        f"{table}: line 7: column valence: 'x' is not a number",
        f"{table}: line 8: column valence is empty"]
    assert all(e.is_labelled() for e in entries)               # a failed labelled row stops training, unless skipped


def test_rows_with_a_label_outside_omgs_range_fail_naming_the_file_the_line_and_the_column(tmp_path):
    """OMG's arousal is in [0, 1] and its valence in [-1, 1] (the paper; Barros et al. 2018): a table on another scale,
    or with the columns swapped, was read as labels. Now such a row fails alone, as a 'nan' one does."""
    rows = [_row("a", "u1.mp4", "0", "-1"), _row("a", "u2.mp4", "1", "1"), _row("a", "u3.mp4", "-0.2", "0.1"),
            _row("a", "u4.mp4", "0.5", "50"), _row("a", "u5.mp4", "1.5", "0.1")]
    _csv(tmp_path / "omg_TrainVideos.csv", HEAD, rows)
    entries = list_videos(get_dataset("omg", root=tmp_path))
    assert [e.video for e in entries if e.problem is None] == ["a__u1", "a__u2"]
    table = tmp_path / "omg_TrainVideos.csv"
    assert sorted(e.problem for e in entries if e.problem) == [
        f"{table}: line {n}: column {c}: {v!r} is outside [{r}], OMG's range of {c} (a labelled row needs a number in "
        "both columns, arousal in [0, 1] and valence in [-1, 1]: correct it, or remove the row)"
        for n, c, v, r in ((4, "arousal", "-0.2", "0, 1"), (5, "valence", "50", "-1, 1"), (6, "arousal", "1.5", "0, 1"))]


def test_the_listing_says_the_clips_no_labelled_row_or_no_csv_names(made):
    root, _, out = made
    notes = []
    entries = {e.video: e for e in list_videos(get_dataset("omg", root=root), echo=notes.append)}
    u3 = entries["vT__u3"]
    assert u3.split == "test" and not u3.is_labelled() and u3.path == root / "videos" / "vT" / "u3.mp4"
    assert u3.named_in == (root / "omg_TestVideos_WithoutLabels.csv", 4)
    assert entries["vT__u2"].is_labelled() and entries["vT__u2"].video_labels == {"arousal": 0.4, "valence": -0.1}
    assert notes[1:] == [
        "note: omg: 1 clip of omg_TestVideos_WithoutLabels.csv has no row in omg_TestVideos_WithLabels.csv: "
        "vT/u3.mp4 (line 4); extracted without labels (for `predict`), the test split is scored without it",
        f"note: omg: 1 video file under {root / 'videos'} is in no CSV (vA/u9.mp4): not extracted"]
    assert notes[1] in out and "is in no CSV (vA/u9.mp4)" in out   # `features` says them
    assert "line 7: column arousal: 'nan' is not a finite number" in out


@pytest.fixture(scope="module")
def trained(made, tmp_path_factory):
    """A temporal model trained on the cache, --skip-unusable (the 'nan' row failed), and its metrics."""
    cfg = TrainConfig(cache=str(made[1]), out=str(tmp_path_factory.mktemp("omg_run")), **TINY)
    return cfg, train(cfg)


def test_train_lists_every_utterance_it_does_not_score(trained, tmp_path):
    cfg, m = trained
    assert m["split"] == "test" and m["videos"]["test"] == ["vT__u1", "vT__u2"]
    left = m["left_out"]
    assert "line 7: column arousal: 'nan' is not a finite number" in left["invalid-id_omg_TrainVideos.csv_line7"]
    assert left["vN__u1"].startswith("its label is not two finite numbers (arousal nan, valence 0.1)")
    assert left["vT__u3"].startswith("came without labels") and "split 'test'" in left["vT__u3"]
    assert left["vE__u1"].startswith(store.NO_FACE)
    assert set(left) == {"invalid-id_omg_TrainVideos.csv_line7", "vN__u1", "vT__u3", "vE__u1"}
    used = {v for vs in m["videos"].values() for v in vs}
    assert used == {"vA__u1", "vA__u2", "vB__u1", "vB__u2", "vC__u1", "vT__u1", "vT__u2"}
    assert json.loads((Path(cfg.out) / "metrics.json").read_text())["left_out"] == left
    # --splits train: the test split is not read, so its unlabelled clip is not listed
    cv = train(replace(cfg, out=str(tmp_path / "cv"), splits="train", folds=3))
    assert "vT__u3" not in cv["left_out"] and "vN__u1" in cv["left_out"]


def test_predict_scores_say_which_utterances_they_lack(made, trained, tmp_path):
    cache, best, quiet = made[1], Path(trained[0].out) / "best.pt", (lambda *a: None)
    test = predict_cache(cache, "omg", best, tmp_path / "t", split="test", echo=quiet)["scores"]
    assert test["videos"] == ["vT__u1", "vT__u2"] and test["n"] == 2 and list(test["left_out"]) == ["vT__u3"]
    on_train = predict_cache(cache, "omg", best, tmp_path / "p", split="train", echo=quiet)["scores"]
    assert on_train["n"] == len(on_train["videos"]) == 5           # every video it counts is scored
    assert on_train["left_out"]["vN__u1"].startswith("its label is not two finite numbers")
    assert on_train["left_out"]["vE__u1"] == f"{store.NO_FACE}: no prediction to score"
    assert set(on_train["left_out"]) == {"vN__u1", "vE__u1"}
    saved = json.loads((tmp_path / "p" / "predict.json").read_text())["scores"]
    assert saved["left_out"] == on_train["left_out"]


def test_predict_names_a_clip_without_a_face_once(made, trained, tmp_path):
    """`predict` printed the no-face clip twice: under "left out of the scores" and under "failed"."""
    r = cli("predict", "--cache", made[1], "--dataset", "omg", "--split", "train", "--checkpoint",
            Path(trained[0].out) / "best.pt", "--out", tmp_path / "p", "--no-progress", cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 1, r.stdout + r.stderr[-3000:]      # the no-face clip fails: no prediction
    said = [line for line in (r.stdout + r.stderr).splitlines() if "vE__u1" in line]
    assert said == ["failed vE__u1: no face in any of its snippets: no prediction (left out of the scores)"], said
    assert "left out of the scores vN__u1: its label is not two finite numbers" in r.stdout


def test_info_names_the_videos_train_and_predict_read_past(made):
    """`info --cache` said "1 of them without labels" of the test split only, and nothing of a NaN label: a user
    learnt which clips no score holds only from a run's output."""
    r = cli("info", "--cache", made[1], cwd=made[1].parent)
    no_traceback(r)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert ("    2 done videos neither trained on nor scored, though in a labelled split: vN__u1 (label not two finite "
            "numbers); vT__u3 (no labels, in split 'test' whose others have them); train and predict leave them out "
            "and list them (metrics.json's left_out, predict.json's scores.left_out)\n") in r.stdout


def _labels_count(out: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if line.strip().startswith("labels "))


def test_info_counts_what_readers_refuse_labels_changed_or_released_and_groups_gone(made, tmp_path):
    """`info --cache` counted a video's labels usable ("labels 9/9") when its label file had changed or labels for it
    had been released since, which train, predict, export and inspect refuse; and counted a done video whose group
    was deleted among the done, with nothing said, where train refuses it ("has no features in the cache"). Now both
    are counted and named, with the `features` command that repairs them; run, it leaves nothing to say."""
    root, cache = tmp_path / "omg", tmp_path / "cache"    # a root and cache copied together: compared there
    shutil.copytree(made[0], root)
    shutil.copytree(made[1], cache)
    before = cli("info", "--cache", cache, cwd=tmp_path)
    no_traceback(before)
    total = int(_labels_count(before.stdout).split("/")[1])
    assert _labels_count(before.stdout) == f"{total}/{total}" and "refused" not in before.stdout, before.stdout
    # the labelled test CSV gains a row for vT/u3 (cached without labels): its file changed for vT__u1 and vT__u2,
    # and vT__u3's labels appeared
    with open(root / "omg_TestVideos_WithLabels.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(_row("vT", "u3.mp4", "0.7", "0.2"))
    shutil.rmtree(cache / "omg" / "videos" / "vB__u2")
    r = cli("info", "--cache", cache, cwd=tmp_path)
    no_traceback(r)
    assert _labels_count(r.stdout) == f"{total - 4}/{total - 1}", r.stdout      # vB__u2 gone, 3 refused
    line = next(x for x in r.stdout.splitlines() if x.startswith("    labels of "))
    assert line.startswith("    labels of 3 videos refused by train, predict, export and inspect"), line
    assert "vT__u1: labels were cached from files that have changed since" in line
    assert "vT__u3: it was cached without labels, and labels for it have appeared since" in line
    lost = next(x for x in r.stdout.splitlines() if "no complete group" in x)
    assert lost.startswith("    1 video of the done has no complete group in the cache (vB__u2)"), lost
    for said in (line, lost):   # each names the command that repairs it, and running it does
        command = said.rsplit("run `", 1)[1].split("`")[0]
        assert command.startswith("python cli.py features --dataset omg"), command
        fix = cli(*shlex.split(command)[2:], "--workers", "1", "--no-progress", cwd=tmp_path)
        no_traceback(fix)
    after = cli("info", "--cache", cache, cwd=tmp_path)
    assert "refused" not in after.stdout and "no complete group" not in after.stdout, after.stdout
    assert _labels_count(after.stdout) == f"{total}/{total}", after.stdout


def test_force_keeps_a_done_group_whose_clip_is_gone(made, tmp_path):
    """`features --force` removed every group before extracting: a clip deleted from disk after its extraction lost
    its arrays (faces, motion), which nothing could make again, and the run then failed on the missing file. Now the
    group is kept as it was and the run fails it, saying why; the index keeps it done, with the error (`info`: kept)."""
    root, cache = tmp_path / "omg", tmp_path / "cache"
    shutil.copytree(made[0], root)
    shutil.copytree(made[1], cache)
    before = store.open_video(cache, "omg", "vB__u1")
    face48 = before["face48"][:]
    (root / "videos" / "vB" / "u1.mp4").unlink()
    r = cli("features", "--dataset", "omg", "--root", root, "--cache", cache, "--stages", "align,motion", "--force",
            "--workers", "1", "--no-progress", cwd=tmp_path)
    no_traceback(r)
    assert r.returncode == 1, r.stdout + r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("vB__u1 "))
    assert line.split()[1:3] == ["kept", "failed"] and (
        f"--force: not extracted again, its video file {root / 'videos' / 'vB' / 'u1.mp4'} is not found") in line, line
    assert store.group_status(cache, "omg", "vB__u1") == "done"
    assert (store.open_video(cache, "omg", "vB__u1")["face48"][:] == face48).all()
    row = store.read_index(cache, "omg").set_index("video").loc["vB__u1"]
    assert row.status == "done" and row.error.startswith("--force: not extracted again"), row
    assert "new" in r.stdout and store.group_status(cache, "omg", "vA__u1") == "done"   # the others were redone
