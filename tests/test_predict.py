"""predict: real videos -> features with the checkpoint's settings -> a trained model -> per-frame CSV."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from synth_video import write_face_video

from features.errors import BadInputError
from pipeline import extract, graph
from pipeline.manifest import get_dataset, list_videos
from train.predict import predict_videos
from train.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for i in range(3):
        vid = root / "videos" / "train" / f"v{i}.avi"
        vid.parent.mkdir(parents=True, exist_ok=True)
        write_face_video(vid, 48, size=(320, 240), fourcc="MJPG", seed=i, no_face=(30, 36) if i == 0 else None)
        for dim in ("arousal", "valence"):
            d = root / "annotations" / "train" / dim
            d.mkdir(parents=True, exist_ok=True)
            np.savetxt(d / f"v{i}.txt", rng.uniform(-1, 1, 48), fmt="%.4f")
    cache = tmp_path_factory.mktemp("cache")
    s = extract.Settings(weights="random", face={"detect_every": 7})   # a non-default setting must carry over
    summary = graph.run(list_videos(get_dataset("demo", root)), cache, "demo", s, workers=1, progress=False,
                        echo=lambda *a: None)
    assert not summary.failed
    # a named motion variant too: a model trained on it must get that variant for new videos, not plain dphase
    variant = extract.Settings(weights="random", face={"detect_every": 7}, motion={"mean_window": 9},
                               motion_variant="mw9")
    assert not graph.run(list_videos(get_dataset("demo", root)), cache, "demo", variant, workers=1, progress=False,
                         echo=lambda *a: None).failed
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(cache=str(cache), dataset="demo", out=str(out), streams="both", pretrain=False, folds=3,
                      epochs=1, length=16, stride=8, batch_size=4, width=8, num_workers=0, plots=False, quiet=True))
    train(TrainConfig(cache=str(cache), dataset="demo", out=str(out / "mw9"), streams="temporal", input="dphase@mw9",
                      folds=3, epochs=1, length=16, stride=8, batch_size=4, width=8, num_workers=0, plots=False,
                      quiet=True))
    return root, out / "best.pt"


def test_predict_writes_one_row_per_frame(trained, tmp_path):
    root, ckpt = trained
    video = root / "videos" / "train" / "v0.avi"
    res = predict_videos([video], ckpt, tmp_path, workers=1, progress=False, echo=lambda *a: None)
    assert not res["failed"]
    df = pd.read_csv(tmp_path / "v0.csv")
    assert list(df.columns) == ["frame", "time", "arousal", "valence", "valid"]
    assert len(df) == 48 and (df.frame == np.arange(48)).all()
    assert not df.valid[30:36].any() and df.valid[:30].all()
    assert df.arousal[df.valid].notna().all() and df.arousal[~df.valid].isna().all()
    assert (tmp_path / "v0.png").stat().st_size > 0


def test_predict_abaw_format_fills_every_frame_of_the_video(trained, tmp_path):
    root, ckpt = trained
    video = root / "videos" / "train" / "v0.avi"        # frames 30-35 have no face
    res = predict_videos([video], ckpt, tmp_path, fmt="abaw", workers=1, progress=False, echo=lambda *a: None)
    assert not res["failed"] and [p.name for p in res["written"]] == ["v0.txt"]
    lines = (tmp_path / "v0.txt").read_text().splitlines()
    assert lines[0] == "valence,arousal" and len(lines) == 49
    sub = pd.read_csv(tmp_path / "v0.txt")
    csv = predict_videos([video], ckpt, tmp_path / "csv", workers=1, progress=False, echo=lambda *a: None)
    assert not csv["failed"]
    df = pd.read_csv(tmp_path / "csv" / "v0.csv")          # the default format, as before
    faces = df.valid.to_numpy()
    assert not faces[30:36].any() and faces[29] and faces[36]
    np.testing.assert_allclose(sub.valence[faces], df.valence[faces].clip(-1, 1), atol=2e-5)
    np.testing.assert_allclose(sub.arousal[30:33], [df.arousal[29].clip(-1, 1)] * 3, atol=2e-5)   # nearest: 29
    np.testing.assert_allclose(sub.arousal[33:36], [df.arousal[36].clip(-1, 1)] * 3, atol=2e-5)   # nearest: 36
    assert sub.notna().all().all() and sub.abs().max().max() <= 1


def test_an_abaw_file_of_a_video_cut_short_of_its_header_is_refused(trained, tmp_path):
    """A test video whose file is cut (a broken copy) decodes to its first frames only; nothing labels it, so the
    frames decoded are no count of the organisers' lines: an ABAW file of them would lack the last ones, padding it
    would repeat one prediction over frames no model saw. The real CLI writes the whole video's file, refuses the
    cut one naming its file and what to do, and a sample that stops within the frames decoded is taken."""
    import shutil

    from click.testing import CliRunner

    from cli import main

    root, ckpt = trained
    whole = root / "videos" / "train" / "v1.avi"   # 48 frames, MJPG: a cut file decodes its first frames
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    args = ["predict", str(cut), str(whole), "--checkpoint", str(ckpt), "--format", "abaw", "--no-progress"]
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "sub")])
    assert r.exit_code == 1, r.output
    assert len((tmp_path / "sub" / "v1.txt").read_text().splitlines()) == 1 + 48
    assert not (tmp_path / "sub" / "cut.txt").exists()
    decoded = int(pd.read_parquet(tmp_path / "sub" / "cache" / "videos" / "index.parquet").set_index("video")
                  .loc["cut", "n_frames"])
    assert 10 <= decoded < 40
    said = (f"failed cut: {cut}: decoded {decoded} of the 48 frames its header declares (the file is cut or damaged, "
            f"or its header is wrong)")
    assert said in r.output and "re-copy the video" in r.output and "then predict it again" in r.output

    def sample(n: int):
        path = tmp_path / f"sample{n}.txt"
        path.write_text("image_location,valence,arousal\n" + "".join(f"{v}/{k:05d}.jpg,0,0\n" for v, m in
                                                                       (("cut", n), ("v1", 48)) for k in range(1, m + 1)))
        # a fresh --out holding a copy of the first call's cache (the same files, extracted once): the call reads
        # the same rows as one extracting them anew, without redoing minutes of extraction
        shutil.copytree(tmp_path / "sub" / "cache", tmp_path / f"s{n}" / "cache")
        return ["--sample", str(path), "--out", str(tmp_path / f"s{n}")]

    r = CliRunner().invoke(main, [*args, *sample(48)])   # rows past the frames decoded: refused, nothing written
    assert r.exit_code != 0 and f"cut: {cut}: decoded {decoded} of the 48 frames" in r.output, r.output
    assert not (tmp_path / "s48" / "abaw_va_submission.txt").exists()
    r = CliRunner().invoke(main, [*args, *sample(decoded)])   # the organisers count what decoded: the header was wrong
    assert r.exit_code == 0, r.output
    assert len((tmp_path / f"s{decoded}" / "abaw_va_submission.txt").read_text().splitlines()) == 1 + decoded + 48


def test_predict_rebuilds_the_variant_the_model_read(trained, tmp_path):
    from pipeline import store

    root, ckpt = trained
    res = predict_videos([root / "videos" / "train" / "v1.avi"], ckpt.parent / "mw9" / "best.pt", tmp_path, workers=1,
                         progress=False, echo=lambda *a: None)
    assert not res["failed"], res["failed"]
    made = store.open_video(tmp_path / "cache", "videos", "v1").attrs["made_with"]
    assert made["dphase_s0@mw9"]["motion"] == {"mean_window": 9}
    assert pd.read_csv(tmp_path / "v1.csv").arousal.notna().sum() == 48


def test_predict_refuses_features_made_differently(trained, tmp_path):
    root, ckpt = trained
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    ck["fingerprints"]["resnet50"] = "0123456789abcdef"     # as if trained on other backbone weights
    other = tmp_path / "other.pt"
    torch.save(ck, other)
    with pytest.raises(BadInputError, match=r"resnet50: trained on 0123456789abcdef, these settings give .*; nothing "
                                            r"was extracted"):
        predict_videos([root / "videos" / "train" / "v1.avi"], other, tmp_path / "out", workers=1, progress=False,
                       echo=lambda *a: None)
    assert not (tmp_path / "out").exists()   # refused before minutes of extraction (a wrong --weights file, say)


def test_an_earlier_calls_files_of_a_video_that_fails_now_are_removed(trained, tmp_path):
    """--out reused: a video of the same name that fails this time (a damaged file) must not leave the earlier
    call's predictions beside this call's predict.json, as if this call had made them."""
    root, ckpt = trained
    good = predict_videos([root / "videos" / "train" / "v1.avi"], ckpt, tmp_path / "out", workers=1,
                          progress=False, echo=lambda *a: None)
    assert (tmp_path / "out" / "v1.csv").is_file() and good["written"]
    broken = tmp_path / "other" / "v1.avi"
    broken.parent.mkdir()
    broken.write_bytes(np.random.default_rng(0).bytes(2000))
    bad = predict_videos([broken], ckpt, tmp_path / "out", workers=1, progress=False, echo=lambda *a: None)
    assert [v for v, _ in bad["failed"]] == ["v1"] and not bad["written"]
    assert not (tmp_path / "out" / "v1.csv").exists() and not (tmp_path / "out" / "v1.png").exists()


def test_a_reused_out_folder_holds_only_the_last_calls_files(trained, tmp_path):
    """--out reused for other videos: the earlier call's files of videos this call did not ask for must go (the
    folder would mix two calls under a predict.json naming one); files the user put there are not listed, and stay."""
    import json

    root, ckpt = trained
    out = tmp_path / "out"
    predict_videos([root / "videos" / "train" / "v1.avi"], ckpt, out, workers=1, progress=False, echo=lambda *a: None)
    (out / "mine.csv").write_text("the user's own\n")
    (out / "notes.txt").write_text("kept\n")
    res = predict_videos([root / "videos" / "train" / "v2.avi"], ckpt, out, workers=1, progress=False,
                         echo=lambda *a: None)
    assert not res["failed"]
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    assert files == ["mine.csv", "notes.txt", "predict.json", "predict.lock", "v2.csv", "v2.png"]
    assert json.loads((out / "predict.json").read_text())["written"] == ["v2.csv", "v2.png"]


def test_an_earlier_listing_names_plain_files_of_the_folder_only(tmp_path):
    """A hand-edited predict.json cannot make a later call delete outside the folder, predict.json itself, or the lock
    file (deleted while a call holds it, the next call would lock a new file and run beside it)."""
    from train.predict_out import written_before

    (tmp_path / "predict.json").write_text('{"written": ["v0.csv", "../x.csv", "/etc/passwd", "predict.json", 3, '
                                           '"predict.lock"]}')
    assert written_before(tmp_path) == {"v0.csv"}
    (tmp_path / "predict.json").write_text("not json")
    assert written_before(tmp_path) == set()


def test_a_model_of_organiser_crops_refuses_video_files_before_extracting(trained, tmp_path):
    """A model trained on the organisers' crops (or OpenFace CSVs) would get faces from our tracking for a video
    file: other features, refused after minutes of extraction with 'recompute with the training settings', which no
    flag can. It is refused first, saying which face source and how to predict instead."""
    root, ckpt = trained
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    for rec in ck["identity"]["sources"].values():   # as `train` records a cache extracted with --faces cropped_aligned
        rec[2]["faces"] = "cropped_aligned"
    crops = tmp_path / "crops.pt"
    torch.save(ck, crops)
    with pytest.raises(BadInputError, match=r"trained on faces from cropped_aligned .*\(`features --faces "
                                            r"cropped_aligned`;"):
        predict_videos([root / "videos" / "train" / "v1.avi"], crops, tmp_path / "out", workers=1, progress=False,
                       echo=lambda *a: None)
    assert not (tmp_path / "out").exists()   # nothing extracted


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(BadInputError, match="checkpoint not found"):
        predict_videos([tmp_path / "x.mp4"], tmp_path / "none.pt", tmp_path)


def test_video_files_for_models_extracted_differently_are_refused_before_extracting(trained, tmp_path):
    """Video files are extracted once for every model averaged: a model whose training cache used other motion
    settings (here the variant mw9) would be refused after the extraction; it is refused first, naming them."""
    root, ckpt = trained
    with pytest.raises(BadInputError, match=r"mw9/best.pt: its training features were extracted with another "
                                            r"motion than those of .*best.pt \(\{'mean_window': 9\}, not \{\}\)"):
        predict_videos([root / "videos" / "train" / "v1.avi"], [ckpt, ckpt.parent / "mw9" / "best.pt"],
                       tmp_path / "out", workers=1, progress=False, echo=lambda *a: None)
    assert not (tmp_path / "out").exists()


def test_video_files_through_several_models_get_the_mean_of_their_predictions(trained, tmp_path):
    from train.predict import predict_cache

    root, ckpt = trained
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    ck["model"] = {k: v * 0.5 if k.startswith("head") and v.is_floating_point() else v for k, v in ck["model"].items()}
    assert any(k.startswith("head") for k in ck["model"])
    other = tmp_path / "other.pt"          # another model of the same features: its output layer halved
    torch.save(ck, other)
    res = predict_videos([root / "videos" / "train" / "v0.avi"], [ckpt, other], tmp_path / "both", workers=1,
                         progress=False, echo=lambda *a: None)
    assert not res["failed"]
    alone = [pd.read_csv(predict_cache(tmp_path / "both" / "cache", "videos", c, tmp_path / f"m{k}",
                                       echo=lambda *a: None)["written"][0]) for k, c in enumerate([ckpt, other])]
    mean = pd.read_csv(tmp_path / "both" / "v0.csv")
    assert not np.allclose(alone[0].arousal[:30], alone[1].arousal[:30], atol=1e-3)
    np.testing.assert_allclose(mean.arousal, (alone[0].arousal + alone[1].arousal) / 2, atol=2e-5)
    np.testing.assert_allclose(mean.valence, (alone[0].valence + alone[1].valence) / 2, atol=2e-5)


def _files(folder) -> dict:
    """Every file under ``folder`` (relative path -> size and mtime); one renamed away while listing is skipped."""
    seen = {}
    for p in folder.rglob("*"):
        try:
            if p.is_file():
                st = p.stat()
                seen[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            pass
    return seen


def test_a_predict_killed_part_way_leaves_the_last_finished_calls_folder(trained, tmp_path):
    """A call killed (SIGKILL: a SLURM time limit, OOM; no handler runs) once its first file is written must leave the
    folder as the earlier, finished call left it: written in place, its files sat beside the earlier call's, under the
    earlier predict.json (video files) or no record at all (a cache), and a zip of the folder submitted the mix. What
    it wrote is in predict.unfinished/ only; the next call leaves its own files and record, nothing else (abaw for
    the calls not killed: no plots, a faster test; the killed call's plots give the time to kill it part way)."""
    import json
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from train.checkpoint import sha256
    from train.predict import predict_cache
    from train.predict_out import STAGING

    _, ckpt = trained
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    cache = ck["config"]["cache"]
    ck["model"] = {k: v * 0.5 if k.startswith("head") and v.is_floating_point() else v for k, v in ck["model"].items()}
    other = tmp_path / "other.pt"          # another model of the same features: other numbers in every file
    torch.save(ck, other)
    out = tmp_path / "out"
    predict_cache(cache, "demo", ckpt, out, fmt="abaw", echo=lambda *a: None)   # the earlier call, finished
    (out / "mine.txt").write_text("the user's own\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(repo / "cli.py"), "predict", "--cache", cache, "--dataset", "demo", "--checkpoint",
           str(other), "--out", str(out), "--no-progress"]
    stamps = _files(out)
    p = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(stamps.get(k) != v for k, v in _files(out).items() if k.endswith((".csv", ".png"))):
            assert p.poll() is None and time.monotonic() < deadline, "the call ended before a file was written"
            time.sleep(0.002)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL
    assert {q.name: q.read_bytes() for q in out.iterdir() if q.is_file()} == before   # the earlier call's, whole
    left = set(_files(out)) - set(before)
    assert left and all(k.startswith(f"{STAGING}/") for k in left) and f"{STAGING}/predict.json" not in left

    r = subprocess.run([*cmd, "--format", "abaw"], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    made = json.loads((out / "predict.json").read_text())
    assert made["checkpoint_sha256"] == sha256(other)
    assert sorted(q.name for q in out.iterdir()) == sorted([*made["written"], "mine.txt", "predict.json", "predict.lock"])
    assert made["written"] == ["v0.txt", "v1.txt", "v2.txt"]
    assert all((out / n).read_bytes() != before[n] for n in made["written"])   # all its own: other numbers


def test_a_call_killed_while_moving_its_files_in_is_finished_by_the_next(tmp_path):
    """Killed between its first and last rename (its files all written and its record staged), a call leaves no
    record in the folder and some of its files moved in: the next call into the folder finishes the move (the earlier
    call's files it did not make go, the user's stay) before anything else. A staging folder without a record (killed
    while writing) is removed, the folder left as it was."""
    import json

    from train.predict_out import EARLIER, RECORD, STAGING, recover

    out, stage = tmp_path / "out", tmp_path / "out" / STAGING
    stage.mkdir(parents=True)
    for name in ("a.csv", "b.csv", "c.txt", "mine.txt"):   # the earlier call's (a, b, c) and the user's
        (out / name).write_text("earlier\n")
    (stage / EARLIER).write_text(json.dumps({"written": ["a.csv", "b.csv", "c.txt"]}))   # moved out first
    (stage / RECORD).write_text(json.dumps({"written": ["a.csv", "d.csv"], "failed": {"b": "no face"}}))
    (out / "a.csv").write_text("new\n")                    # moved in before the kill
    (stage / "d.csv").write_text("new\n")                  # not yet
    recover(out)
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "d.csv", "mine.txt", RECORD]   # b, c: the earlier's
    assert [(out / n).read_text() for n in ("a.csv", "d.csv", "mine.txt")] == ["new\n", "new\n", "earlier\n"]
    assert json.loads((out / RECORD).read_text())["written"] == ["a.csv", "d.csv"]
    stage.mkdir()
    (stage / "partial.csv").write_text("cut sh")   # killed while writing: no record staged
    recover(out)
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "d.csv", "mine.txt", RECORD]


def test_a_second_predict_into_a_folder_in_use_is_refused_and_leaves_the_first_calls_work(trained, tmp_path):
    """Two calls into one --out at once: the second's cleanup took the first's staging folder (no record yet, as a
    killed call's) and the first crashed when it wrote its next file. While a call holds the folder (here the test
    process, part way: its staging folder holds a file written so far), a real `cli.py predict` into it exits at once
    naming the folder, and touches nothing; once the holder is done the same command runs. (A holder killed by
    SIGKILL releases it too: test_a_predict_killed_part_way_leaves_the_last_finished_calls_folder predicts again
    into the folder of the call it killed.)"""
    import subprocess
    import sys
    from pathlib import Path

    from train.predict_lock import held
    from train.predict_out import STAGING, staged

    _, ckpt = trained
    cache = torch.load(ckpt, map_location="cpu", weights_only=True)["config"]["cache"]
    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(repo / "cli.py"), "predict", "--cache", cache, "--dataset", "demo", "--checkpoint",
           str(ckpt), "--out", str(out), "--format", "abaw", "--no-progress"]
    with held(out), staged(out) as stage:   # the first call, writing
        (stage / "v0.txt").write_text("valence,arousal\n")
        r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
        assert r.returncode != 0 and not (out / "predict.json").exists()
        assert f"{out}: another predict is writing there" in r.stderr, r.stderr
        assert (stage / "v0.txt").read_text() == "valence,arousal\n"   # its staging folder untouched
    # the holder left its staging folder without a record, as a call killed while writing: the next call cleans up
    r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (out / STAGING).exists() and (out / "predict.json").is_file() and (out / "v0.txt").is_file()


def test_a_move_blocked_by_a_folder_names_it_and_the_next_call_finishes_once_it_is_gone(trained, tmp_path):
    """A folder where a call's file must go stops the move of its files into --out. Every later call into the folder
    starts by finishing that move (recover), so each stopped there with a bare IsADirectoryError; each must name the
    path in the way and what to do, and once it is moved away the next call finishes the move and runs."""
    import json

    from train.predict import predict_cache
    from train.predict_out import RECORD, STAGING

    _, ckpt = trained
    cache = torch.load(ckpt, map_location="cpu", weights_only=True)["config"]["cache"]
    out = tmp_path / "out"
    (out / "v1.txt").mkdir(parents=True)   # in the way of the abaw file of video v1
    for _ in range(2):   # the call that stages the files, then a later call, which starts with the move
        with pytest.raises(BadInputError) as e:
            predict_cache(cache, "demo", ckpt, out, fmt="abaw", echo=lambda *a: None)
        assert e.value.path == str(out / "v1.txt") and "move" in e.value.hint and str(out / "v1.txt") in e.value.hint
        assert (out / STAGING / RECORD).is_file() and not (out / RECORD).exists()   # the files wait, marked whole
    (out / "v1.txt").rmdir()
    res = predict_cache(cache, "demo", ckpt, out, fmt="abaw", echo=lambda *a: None)
    assert not res["failed"] and not (out / STAGING).exists()
    assert json.loads((out / RECORD).read_text())["written"] == ["v0.txt", "v1.txt", "v2.txt"]
    assert (out / "v1.txt").is_file()
