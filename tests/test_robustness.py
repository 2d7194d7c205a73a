"""`robustness` (paper Fig. 5): gamma-corrupted motion inputs made from the cached faces, stored as variants under their
own fingerprints (equal to what `features --motion-variant gamma0.3` makes), trained and scored per beta and input,
tabulated and plotted; a rerun reuses the inputs and the trainings.

Real videos encoded by OpenCV, the real CLI (in-process), a real LocalCluster for `features`, a real Zarr cache.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from synth_video import write_face_video

import cli
from pipeline import store
from pipeline.compute import MOTION_BATCH, frame_gammas, jitter_frames

FRAMES = {"long": 300, "b": 30, "c": 30, "d": 30}   # "long" spans two cache chunks (256 + 44)
UNLABELLED = "e"
TRAIN = ["--folds", "3", "--fold-ids", "0", "--epochs", "1", "--width", "2", "--window", "4", "--batch-size", "2",
         "--num-workers", "0", "--threads", "1", "--no-plots", "--no-progress"]


def _run(*args):
    return CliRunner().invoke(cli.main, [*map(str, args)])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for i, (vid, n) in enumerate(FRAMES.items()):
        (root / "videos" / "train").mkdir(parents=True, exist_ok=True)
        write_face_video(root / "videos" / "train" / f"{vid}.avi", n, size=(320, 240), fourcc="MJPG", seed=i)
        rng = np.random.default_rng(i)
        for dim in ("arousal", "valence"):
            (root / "annotations" / "train" / dim).mkdir(parents=True, exist_ok=True)
            np.savetxt(root / "annotations" / "train" / dim / f"{vid}.txt", rng.uniform(-1, 1, n), fmt="%.5f")
    (root / "videos" / "test").mkdir(parents=True)   # unlabelled: training never reads it, so nothing is derived
    write_face_video(root / "videos" / "test" / f"{UNLABELLED}.avi", 30, size=(320, 240), fourcc="MJPG", seed=9)
    cache = tmp_path_factory.mktemp("cache")
    # no `--extras flow`: robustness makes beta 0's clean flow itself, from the cached faces
    res = _run("features", "--dataset", "demo", "--root", root, "--cache", cache, "--stages", "align,motion",
               "--workers", "1", "--no-progress")
    assert res.exit_code == 0, res.output
    out = tmp_path_factory.mktemp("fig5")
    first = _run("robustness", "--cache", cache, "--dataset", "demo", "--betas", "0,0.3", "--inputs", "dphase,flow",
                 "--out", out, *TRAIN)
    return root, cache, out, first


def test_corrupted_inputs_are_the_motion_of_the_per_frame_gamma_corrupted_cached_faces(data):
    from features.motion import delta_phase, optical_flow

    _, cache, _, first = data
    assert first.exit_code == 0, first.output
    g = store.open_video(cache, "demo", "long")
    face48, valid = g["face48"][:], g["valid"][:]
    assert valid[256:].any()
    bad = jitter_frames(face48, 0.3, 0, "long", 0)   # each frame's gamma from (seed, sha256 of the id, frame)
    gam = frame_gammas(0.3, 0, "long", range(300))
    assert 0.7 <= gam.min() and gam.max() <= 1.3 and gam.std() > 0.1
    want = delta_phase(bad, valid, batch_size=MOTION_BATCH)   # the pipeline's batches: the same products, the same bits
    for s in ("s0", "s1"):
        np.testing.assert_array_equal(g[f"dphase_{s}@gamma0.3"][:], want[s].astype(np.float16))
    assert not np.array_equal(g["dphase_s0@gamma0.3"][:], g["dphase_s0"][:])
    np.testing.assert_array_equal(g["flow@gamma0.3"][:], optical_flow(bad, valid)["flow"].astype(np.float16))
    np.testing.assert_array_equal(g["flow"][:], optical_flow(face48, valid)["flow"].astype(np.float16))   # beta 0
    fps = dict(g.attrs["fingerprints"])
    assert len({fps["dphase_s0"], fps["dphase_s0@gamma0.3"], fps["flow"], fps["flow@gamma0.3"]}) == 4
    assert "6 arrays on 4 labelled videos, 4 videos updated" in first.output
    assert "dphase_s0@gamma0.3" not in store.open_video(cache, "demo", UNLABELLED)   # never read by training


def test_features_makes_the_same_arrays_under_the_same_fingerprints(data):
    root, cache, _, _ = data
    before = store.video_fingerprints(cache, "demo", "long")
    res = _run("features", "--dataset", "demo", "--root", root, "--cache", cache, "--stages", "align,motion",
               "--extras", "flow", "--motion-variant", "gamma0.3", "--workers", "1", "--no-progress")
    assert res.exit_code == 0 and "1 updated, 4 skipped" in res.output, res.output   # the unlabelled video gets them
    assert store.video_fingerprints(cache, "demo", "long") == before


def test_tables_and_figure_say_what_made_them_and_a_rerun_reuses_everything(data):
    _, cache, out, first = data
    table = pd.read_csv(out / "robustness.csv")
    assert list(zip(table.input, table.beta, table["reads"])) == [
        ("dphase", 0.0, "dphase"), ("dphase", 0.3, "dphase@gamma0.3"), ("flow", 0.0, "flow"), ("flow", 0.3, "flow@gamma0.3")]
    assert (table.folds == 1).all() and table.ccc_arousal.notna().all()
    fp = store.video_fingerprints(cache, "demo", "b")["dphase_s0@gamma0.3"]
    assert f"dphase_s0@gamma0.3={fp}" in table.fingerprint[1]
    m = json.loads((out / "dphase_beta=0.3" / "fold0" / "metrics.json").read_text())
    assert m["input"] == "dphase@gamma0.3" and m["streams"] == "temporal"
    assert table.ccc_arousal[1] == pytest.approx(m["ccc_arousal"], abs=1e-4)   # the table is that run's score
    md = (out / "robustness.md").read_text()
    assert "dataset demo" in md and str(cache.resolve()) in md and "epochs 1" in md and "gamma seed 0" in md
    assert "arch paper" in md and "Protocol " in md   # which architecture and protocol made every row
    # every deciding setting, as ablate's Base line: two tables of other --patience (--length...) read alike before
    assert all(s in md for s in ("patience 5", "length 64", "stride 32", "momentum 0.9", "weight_decay 0.0005"))
    prov = json.loads((out / "robustness.json").read_text())
    assert prov["runs"]["flow_beta=0.3/fold0"]["identity"]["config"]["input"] == "flow@gamma0.3"
    from PIL import Image

    assert Image.open(out / "robustness.png").size[0] > 500
    mtime = (out / "flow_beta=0.3" / "fold0" / "metrics.json").stat().st_mtime_ns
    again = _run("robustness", "--cache", cache, "--dataset", "demo", "--betas", "0,0.3", "--inputs", "dphase,flow",
                 "--out", out, *TRAIN)
    assert again.exit_code == 0, again.output
    assert "0 videos updated" in again.output and "reused" in again.output
    assert (out / "flow_beta=0.3" / "fold0" / "metrics.json").stat().st_mtime_ns == mtime


def test_bad_requests_are_refused(data):
    _, cache, out, _ = data
    for args, msg in ((["--betas", "0,1.2"], "betas"), (["--streams", "both"], "drop --streams"),
                      (["--inputs", "dphase@flip"], "already has face transforms"),
                      # named gamma0.3: its row claimed a beta the reused run of 0.3 was made with
                      (["--betas", "0,0.3,0.3000001"], "0.3000001 would read gamma0.3, the input of beta 0.3"),
                      (["--betas", "0,0.00001"], "1e-05 is below 0.0001")):
        res = _run("robustness", "--cache", cache, "--dataset", "demo", "--out", out, *args, *TRAIN)
        assert res.exit_code == 2 and msg in res.output, res.output


def test_another_gamma_seed_trains_beside_the_first_not_over_it(data):
    _, cache, out, _ = data
    first = out / "dphase_beta=0.3" / "fold0" / "metrics.json"
    mtime = first.stat().st_mtime_ns
    res = _run("robustness", "--cache", cache, "--dataset", "demo", "--betas", "0,0.3", "--inputs", "dphase",
               "--gamma-seed", "1", "--out", out, *TRAIN)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "dphase_beta=0.3_seed=1" / "fold0" / "metrics.json").read_text())
    assert m["input"] == "dphase@gamma0.3s1"
    assert first.stat().st_mtime_ns == mtime                    # seed 0's run is kept
    assert "dphase_beta=0_seed" not in " ".join(p.name for p in out.iterdir())   # beta 0 is every seed's


def test_faces_cut_from_gamma_jittered_frames_are_refused(data, tmp_path):
    """`features --gamma-jitter` corrupts the frames before alignment: beta 0 would not be clean and the tables would
    say alignment saw clean frames."""
    import shutil

    _, cache, _, _ = data
    copy = tmp_path / "c"
    shutil.copytree(cache, copy)
    g = store.open_video(copy, "demo", "b", mode="r+")
    made = dict(g.attrs["made_with"])
    made["face48"] = {**made["face48"], "gamma_jitter": 0.3}   # what `features --gamma-jitter 0.3` records
    g.attrs["made_with"] = made
    res = _run("robustness", "--cache", copy, "--dataset", "demo", "--betas", "0,0.3", "--inputs", "dphase",
               "--out", tmp_path / "o", *TRAIN)
    assert res.exit_code == 2 and "the faces of 1 video were cut from frames corrupted by `features --gamma-jitter` " \
                                  "(b (0.3))" in res.output, res.output


def test_a_rerun_killed_while_it_retrains_leaves_no_table_looking_current(data, tmp_path):
    """A rerun under another --epochs retrains the runs, and is killed: robustness.csv/.json/.png and .md of the run
    before stayed in place, looking current beside runs they no longer described (the csv says nothing of the
    settings). Now, as `ablate` does, robustness.md is marked stale and the others removed before any run trains;
    the run's own files are written whole at its end, the Markdown table last."""
    from kill_while_training import kill_once_it_trains

    from train.ablate import STALE

    _, cache, _, _ = data
    out = tmp_path / "fig"
    args = ["--cache", cache, "--dataset", "demo", "--betas", "0", "--inputs", "dphase", "--out", out]
    first = _run("robustness", *args, *TRAIN)
    assert first.exit_code == 0, first.output
    old = (out / "robustness.md").read_text()
    run = out / "dphase_beta=0" / "fold0"
    longer = [*TRAIN[:TRAIN.index("--epochs")], "--epochs", "10000", "--patience", "1000",
              *TRAIN[TRAIN.index("--epochs") + 2:]]
    kill_once_it_trains(["robustness", *args, *longer], run)   # retraining, 10000 epochs
    md = (out / "robustness.md").read_text()
    assert md.startswith(STALE) and md.endswith(old) and "a `robustness` run" in md and "has not finished" in md
    assert "robustness.csv, robustness.json and robustness.png were removed" in md
    assert not [n for n in ("robustness.csv", "robustness.json", "robustness.png") if (out / n).exists()]
    again = _run("robustness", *args, *TRAIN)   # run to its end: a current table
    assert again.exit_code == 0, again.output
    assert not (out / "robustness.md").read_text().startswith(STALE)
    assert all((out / n).is_file() for n in ("robustness.csv", "robustness.json", "robustness.png"))
    assert json.loads((run / "metrics.json").read_text())["config"]["epochs"] == 1
    assert not list(out.glob("*.tmp.*"))


def test_a_cache_changed_between_its_runs_writes_no_table(data, tmp_path, monkeypatch):
    """A `features` run between two trainings (here: new labels after the first) would leave the table comparing
    runs made on different data: refused, no table written. Last in this module: it restores the labels after."""
    import train.robustness as robustness_module

    _, cache, _, _ = data
    videos = list(FRAMES)
    before = {v: store.video_fingerprints(cache, "demo", v)["labels"] for v in videos}
    real, calls = robustness_module.train, []

    def features_between_runs(c):
        m = real(c)
        if not calls:
            for v in videos:
                store.set_fingerprints(store.open_video(cache, "demo", v, mode="r+"), {"labels": "labels-fixed"})
        calls.append(c.out)
        return m

    monkeypatch.setattr(robustness_module, "train", features_between_runs)
    try:
        res = _run("robustness", "--cache", cache, "--dataset", "demo", "--betas", "0", "--inputs", "dphase,flow",
                   "--out", tmp_path / "fig", *TRAIN)
    finally:
        for v in videos:
            store.set_fingerprints(store.open_video(cache, "demo", v, mode="r+"), {"labels": before[v]})
    assert res.exit_code != 0 and len(calls) == 2
    assert ("the cache changed during this robustness: its runs read different data (labels of b: "
            f"{before['b']} in dphase_beta=0/fold0, labels-fixed in flow_beta=0/fold0; labels of c: ") in res.output
    assert "no table is written" in res.output
    assert not list((tmp_path / "fig").glob("robustness.*"))


def _two_videos(root):
    """A demo-layout dataset of two labelled 30-frame videos, p and q, in the train split."""
    for i, vid in enumerate(("p", "q")):
        (root / "videos" / "train").mkdir(parents=True, exist_ok=True)
        write_face_video(root / "videos" / "train" / f"{vid}.avi", 30, size=(320, 240), fourcc="MJPG", seed=i)
        for dim in ("arousal", "valence"):
            (root / "annotations" / "train" / dim).mkdir(parents=True, exist_ok=True)
            np.savetxt(root / "annotations" / "train" / dim / f"{vid}.txt", np.linspace(-1, 1, 30), fmt="%.5f")
    return root


def test_plain_dphase_made_with_other_motion_settings_is_refused_not_replaced(tmp_path):
    """robustness's beta 0 reads plain dphase; a cache whose plain dphase was made with other motion settings (a mean
    window, recorded in made_with) must not have it silently replaced: `features` refuses that as a conflict and
    replaces it only with --replace-variant, and so does derive, naming the arrays and both settings."""
    from pipeline import settings
    from pipeline.derive import derive

    root = _two_videos(tmp_path / "data")
    cache = tmp_path / "cache"
    base = ["features", "--dataset", "demo", "--root", root, "--cache", cache, "--stages", "align,motion",
            "--workers", "1", "--no-progress"]
    assert _run(*base).exit_code == 0
    # q's plain dphase as a run with a mean window of 9 made it (before plain dphase meant the default settings only)
    g = store.open_video(cache, "demo", "q", mode="r+")
    face = dict(g.attrs["fingerprints"])["face48"]
    old = {n: settings.array_fingerprint(n, face, {"mean_window": 9}) for n in ("dphase_s0", "dphase_s1")}
    store.set_fingerprints(g, old)
    g.attrs["made_with"] = {**dict(g.attrs["made_with"]),
                            **{n: {"motion_variant": None, "motion": {"mean_window": 9}} for n in old}}
    values = g["dphase_s0"][:]
    res = _run("robustness", "--cache", cache, "--dataset", "demo", "--betas", "0,0.3", "--inputs", "dphase",
               "--out", tmp_path / "fig", *TRAIN)
    assert res.exit_code == 2, res.output
    assert "dphase_s0, dphase_s1 made with motion settings {'mean_window': 9}, this run asks {}" in res.output
    assert f"--cache {cache} --stages align,motion --root {root.resolve()} --replace-variant" in res.output
    g = store.open_video(cache, "demo", "q")
    assert {n: dict(g.attrs["fingerprints"])[n] for n in old} == old and "dphase_s0@gamma0.3" not in g
    np.testing.assert_array_equal(g["dphase_s0"][:], values)
    # as `features` does: refused there too, remade with the default settings under --replace-variant, then derived
    assert _run(*base).exit_code != 0
    assert _run(*base, "--replace-variant").exit_code == 0
    assert derive(cache, "demo", ["dphase_s0", "dphase_s1"], progress=False) == {"videos": 2, "updated": 0}
    assert store.open_video(cache, "demo", "q").attrs["made_with"]["dphase_s0"]["motion"] == {}


def test_conflicts_in_two_motion_variants_get_one_replace_command_per_variant(tmp_path):
    """derive refused plain dphase and dphase@gamma0.3 made with other motion settings with one command naming both
    variants: `--motion-variant gamma0.3 --replace-variant` (click keeps an option's last value), which remade the
    corrupted arrays only, so the next derive was refused again. Each variant gets its own command, each with
    --replace-variant; pasted as printed, they leave nothing to derive."""
    import re
    import shlex

    from features.errors import BadInputError
    from pipeline import settings
    from pipeline.derive import derive

    root = _two_videos(tmp_path / "data")
    cache = tmp_path / "cache"
    assert _run("features", "--dataset", "demo", "--root", root, "--cache", cache, "--stages", "align,motion",
                "--workers", "1", "--no-progress").exit_code == 0
    names = ["dphase_s0", "dphase_s1", "dphase_s0@gamma0.3", "dphase_s1@gamma0.3"]
    assert derive(cache, "demo", names, progress=False)["updated"] == 2
    # q's two variants as runs with a mean window of 9 made them
    g = store.open_video(cache, "demo", "q", mode="r+")
    face = dict(g.attrs["fingerprints"])["face48"]
    store.set_fingerprints(g, {n: settings.array_fingerprint(n, face, {"mean_window": 9}) for n in names})
    g.attrs["made_with"] = {**dict(g.attrs["made_with"]),
                            **{n: {"motion_variant": None, "motion": {"mean_window": 9}} for n in names}}
    with pytest.raises(BadInputError) as e:
        derive(cache, "demo", names, progress=False)
    commands = re.findall(r"`(python cli\.py features [^`]*)`", e.value.hint)
    assert len(commands) == 2 and ", then " in e.value.hint, e.value.hint
    assert all(c.endswith(" --replace-variant") for c in commands), commands
    assert "--motion-variant" not in commands[0] and "--motion-variant gamma0.3" in commands[1]
    for command in commands:   # as a user pastes them (each is quoted for a shell)
        res = _run(*shlex.split(command)[2:], "--workers", "1", "--no-progress")
        assert res.exit_code == 0, res.output
    assert derive(cache, "demo", names, progress=False) == {"videos": 2, "updated": 0}
    made = store.open_video(cache, "demo", "q").attrs["made_with"]
    assert all(made[n]["motion"] == {} for n in names)


def test_rows_from_a_video_whose_last_update_failed_say_so(data, tmp_path):
    """A done video whose last `features` run reported an error (its file changed, the rebuild failed) is read from
    the arrays made before; each run said so in metrics.json's not_updated, robustness.md did not. Now it notes it."""
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(data[1], cache)
    rows = store.read_index(cache, "demo").to_dict("records")
    error = "/data/b.avi: the video decodes to 20 frames, its header says 30"   # as `features` records a failed rebuild
    store.write_index(cache, "demo", [{**r, "error": error} if r["video"] == "b" else r for r in rows])
    out = tmp_path / "fig5"
    res = _run("robustness", "--cache", cache, "--dataset", "demo", "--betas", "0", "--inputs", "dphase", "--out", out,
               *TRAIN)
    assert res.exit_code == 0, res.output
    assert ("1 video read as cached before its last `features` run, which reported an error (b: "
            f"{error}): run dphase_beta=0/fold0 read the arrays made before, from its file as it was then; each run's "
            "metrics.json lists it in not_updated.") in (out / "robustness.md").read_text()
