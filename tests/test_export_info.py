"""export --format h5 copies the cache faithfully; info shows datasets and what a cache holds."""
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import cli
from features.errors import BadInputError
from pipeline import store


def _cache(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"valid": np.ones(300, bool), "resnet50": rng.random((300, 2048)).astype("f2"),
              "dphase_s0": rng.standard_normal((300, 2, 48, 48)).astype("f2"),
              "labels": rng.uniform(-1, 1, (300, 2)).astype("f4")}
    store.write_video(tmp_path, "demo", "v1", arrays, {"split": "train", "fps": 30.0})
    rows = [store.index_row(tmp_path, "demo", "v1"),
            {"video": "bad", "status": "failed", "error": "bad.mp4: empty file", "split": "train"}]
    store.write_index(tmp_path, "demo", rows)
    return arrays


def test_export_h5_roundtrip(tmp_path):
    arrays = _cache(tmp_path)
    out = tmp_path / "out.h5"
    res = CliRunner().invoke(cli.main, ["export", "--cache", str(tmp_path), "--dataset", "demo", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 video" in res.output and "1 videos" not in res.output
    with h5py.File(out) as h5:
        assert list(h5) == ["v1"]                      # failed videos are not exported
        for name, data in arrays.items():
            np.testing.assert_array_equal(h5["v1"][name][:], data)
        assert h5["v1"].attrs["status"] == "done"


def test_export_copies_a_video_again_when_features_changed_it_meanwhile(tmp_path, monkeypatch):
    """A `features` run that swaps a video's arrays while export copies them: the file holds one state, not both."""
    from pipeline import export

    _cache(tmp_path)
    copy, calls = export._copy_video, []

    def features_meanwhile(cache, dataset, video, grp, names):
        copy(cache, dataset, video, grp, names)
        calls.append(video)
        if len(calls) == 1:   # the first copy is done: now a `--replace-variant`-like update lands
            g = store.open_video(cache, dataset, video, mode="r+")
            g["resnet50"][:] = 0.5
            store.set_fingerprints(g, {"resnet50": "made-meanwhile"})

    monkeypatch.setattr(export, "_copy_video", features_meanwhile)
    res = export.export_h5(tmp_path, "demo", tmp_path / "out.h5")
    assert res.written == ["v1"] and calls == ["v1", "v1"]
    with h5py.File(tmp_path / "out.h5") as h5:
        assert (h5["v1"]["resnet50"][:] == 0.5).all() and "made-meanwhile" in h5["v1"].attrs["fingerprints"]


def test_info_lists_datasets_and_cache(tmp_path):
    arrays = _cache(tmp_path)
    for video, split in (("v2", "test"), ("v3", "validation")):   # v2 as a test list's entry: no label files
        store.write_video(tmp_path, "demo", video, arrays, {"split": split, "fps": 30.0,
                                                            **({"label_files": {}} if video == "v2" else {})})
    store.write_index(tmp_path, "demo", [*store.read_index(tmp_path, "demo").to_dict("records"),
                                         *(store.index_row(tmp_path, "demo", v) for v in ("v2", "v3"))])
    res = CliRunner().invoke(cli.main, ["info", "--cache", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for word in ("torch", "CUDA available", "affwild2", "AFFWILD2_ROOT", "omg"):
        assert word in res.output
    assert "3 done (900 frames), 1 failed" in res.output and "bad.mp4: empty file" in res.output
    assert "splits of the done: train 1, validation 1, test 1 (1 of them without labels: not trained on)" in res.output


def test_unknown_dataset_lists_known_ones(tmp_path):
    res = CliRunner().invoke(cli.main, ["features", "--dataset", "nope", "--cache", str(tmp_path)])
    assert res.exit_code == 2 and "known datasets: affwild, affwild2, demo, omg" in res.output


def _stale_cache(tmp_path):
    """Two done videos; v2's dphase_s0 is stale (an update was killed between marking and swapping)."""
    rng = np.random.default_rng(2)
    for v in ("v1", "v2"):
        arrays = {"valid": np.ones(40, bool), "face48": rng.integers(0, 255, (40, 48, 48), dtype="u1"),
                  "dphase_s0": rng.standard_normal((40, 2, 48, 48)).astype("f2"),
                  "labels": rng.uniform(-1, 1, (40, 2)).astype("f4")}
        store.write_video(tmp_path, "demo", v, arrays, {"split": "train", "fps": 30.0})
    store.mark_stale(store.open_video(tmp_path, "demo", "v2", mode="r+"), ["dphase_s0"])
    store.write_index(tmp_path, "demo", [store.index_row(tmp_path, "demo", v) for v in ("v1", "v2")])
    return tmp_path


def test_export_leaves_out_an_unusable_video_and_names_the_repair(tmp_path):
    cache = _stale_cache(tmp_path)
    out = tmp_path / "out.h5"
    res = CliRunner().invoke(cli.main, ["export", "--cache", str(cache), "--dataset", "demo", "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "wrote 1 video to" in res.output
    assert "'v2'" in res.output and "dphase_s0 is stale" in res.output
    assert f"python cli.py features --dataset demo --cache {cache}" in res.output
    with h5py.File(out) as h5:
        assert list(h5) == ["v1"] and "v2" in h5.attrs["left_out"]


def test_inspect_refuses_an_unusable_video_with_the_repair_command(tmp_path):
    cache = _stale_cache(tmp_path)
    res = CliRunner().invoke(cli.main, ["inspect", "--cache", str(cache), "--dataset", "demo", "--video", "v2",
                                        "--out", str(tmp_path / "png")])
    assert res.exit_code == 2 and "'v2'" in res.output and "dphase_s0 is stale" in res.output
    assert "cli.py features --dataset demo" in res.output and "--stages align,motion" in res.output
    assert not (tmp_path / "png").exists() or not list((tmp_path / "png").iterdir())
    ok = CliRunner().invoke(cli.main, ["inspect", "--cache", str(cache), "--dataset", "demo", "--video", "v1",
                                       "--out", str(tmp_path / "png")])
    assert ok.exit_code == 0, ok.output


def _stages(text: str) -> set[str]:
    """The stages of the `--stages` flag in a message."""
    return set(text.split("--stages ", 1)[1].split()[0].strip("`'),;").split(","))


def test_the_repair_of_a_group_not_done_makes_what_the_other_videos_hold(tmp_path):
    """v2 was cut mid-write (status writing): its repair makes the group again whole, so it must ask for every stage
    the dataset's other videos hold, and what the reader needs. Export asks for no arrays in a group it cannot see
    in, and inspect for faces and labels only: the hint said `--stages align`, which rebuilt v2 without ΔPhase and
    ResNet50 features."""
    from pipeline import export

    rng = np.random.default_rng(4)
    arrays = {"valid": np.ones(40, bool), "face48": rng.integers(0, 255, (40, 48, 48), dtype="u1"),
              "dphase_s0": rng.standard_normal((40, 2, 48, 48)).astype("f2"),
              "dphase_s1": rng.standard_normal((40, 2, 24, 24)).astype("f2"),
              "resnet50": rng.random((40, 2048)).astype("f2"), "labels": rng.uniform(-1, 1, (40, 2)).astype("f4")}
    for v in ("v1", "v2"):
        store.write_video(tmp_path, "demo", v, arrays, {"split": "train", "fps": 30.0})
    store.write_index(tmp_path, "demo", [store.index_row(tmp_path, "demo", v) for v in ("v1", "v2")])
    store.open_video(tmp_path, "demo", "v2", mode="r+").attrs["status"] = "writing"   # a write killed mid-way
    res = export.export_h5(tmp_path, "demo", tmp_path / "out.h5")
    assert res.written == ["v1"] and [v for v, _ in res.left_out] == ["v2"]
    assert _stages(res.left_out[0][1]) == {"align", "motion", "spatial"}, res.left_out
    ran = CliRunner().invoke(cli.main, ["inspect", "--cache", str(tmp_path), "--dataset", "demo", "--video", "v2",
                                        "--out", str(tmp_path / "png")])
    assert ran.exit_code == 2 and "not complete" in ran.output
    assert _stages(ran.output) == {"align", "motion", "spatial"}, ran.output
    # the reader's own arrays are asked for though no other video holds them (a dataset of this one video)
    store.write_index(tmp_path, "demo", [store.index_row(tmp_path, "demo", "v2")])
    with pytest.raises(store.UnusableVideo) as err:
        store.check_arrays(tmp_path, "demo", "v2", ["resnet50", "valid"])
    assert _stages(err.value.hint) == {"align", "spatial"}
    ran = CliRunner().invoke(cli.main, ["inspect", "--cache", str(tmp_path), "--dataset", "demo", "--video", "v2",
                                        "--out", str(tmp_path / "png")])
    assert _stages(ran.output) == {"align", "motion"}, ran.output   # inspect draws ΔPhase


def _made_by(hint: str) -> set[str]:
    """The arrays the `features` commands of a hint write for a video made anew, each command's flags parsed by
    click as the command line parses them (an option given twice keeps its last value)."""
    import re
    import shlex

    from pipeline.settings import Settings, wanted_arrays

    made = set()
    for cmd in re.findall(r"`(python cli\.py features [^`]*)`", hint):
        p = cli.features.make_context("features", shlex.split(cmd)[3:]).params
        made |= set(wanted_arrays(Settings(stages=tuple(p["stages"].split(",")), extras=tuple(filter(None,
                                           p["extras"].split(","))), motion_variant=p["motion_variant"])))
    return made


def test_the_repair_of_a_group_not_done_makes_the_variants_the_other_videos_hold(tmp_path):
    """The other videos hold named variants too (dphase@paper, dphase@mw9, flow@gamma0.2 of a robustness run):
    the repair of a group not done must name every run that makes them (one --motion-variant each), or the next
    `train --input dphase@paper` refuses the video again."""
    from pipeline import export

    rng = np.random.default_rng(5)
    d0, d1 = rng.standard_normal((40, 2, 48, 48)).astype("f2"), rng.standard_normal((40, 2, 24, 24)).astype("f2")
    arrays = {"valid": np.ones(40, bool), "face48": rng.integers(0, 255, (40, 48, 48), dtype="u1"),
              "dphase_s0": d0, "dphase_s1": d1, "resnet50": rng.random((40, 2048)).astype("f2"),
              "labels": rng.uniform(-1, 1, (40, 2)).astype("f4")}
    for variant in ("paper", "mw9", "gamma0.2"):
        arrays.update({f"dphase_s0@{variant}": d0, f"dphase_s1@{variant}": d1})
    arrays["flow@gamma0.2"] = d0
    for v in ("v1", "v2"):
        store.write_video(tmp_path, "demo", v, arrays, {"split": "train", "fps": 30.0})
    store.write_index(tmp_path, "demo", [store.index_row(tmp_path, "demo", v) for v in ("v1", "v2")])
    store.open_video(tmp_path, "demo", "v2", mode="r+").attrs["status"] = "writing"   # a write killed mid-way
    hint = export.export_h5(tmp_path, "demo", tmp_path / "out.h5").left_out[0][1]
    assert _made_by(hint) >= set(arrays), hint
    cmd = f"python cli.py features --dataset demo --cache {tmp_path}"
    assert (f"run `{cmd} --stages align,motion,spatial`, then `{cmd} --stages align,motion --extras flow "
            f"--motion-variant gamma0.2`, then `{cmd} --stages align,motion --motion-variant mw9`, then `{cmd} "
            f"--stages align,motion --motion-variant paper`") in hint
    with pytest.raises(store.UnusableVideo) as err:   # what train --input dphase@paper says of v2
        store.check_arrays(tmp_path, "demo", "v2", ["dphase_s0@paper", "dphase_s1@paper", "valid", "labels"])
    assert _made_by(err.value.hint) >= set(arrays), err.value.hint
    # a done group: the reader's arrays only, in one command where one run makes them all
    store.open_video(tmp_path, "demo", "v2", mode="r+").attrs["status"] = "done"
    store.mark_stale(store.open_video(tmp_path, "demo", "v2", mode="r+"), ["dphase_s0@paper"])
    with pytest.raises(store.UnusableVideo) as err:
        store.check_arrays(tmp_path, "demo", "v2", ["dphase_s0@paper", "dphase_s1@paper", "valid", "labels"])
    assert err.value.hint == f"run `{cmd} --stages align,motion --motion-variant paper`"


def _inspect(cache, dataset="demo", video="v1", *more):
    return CliRunner().invoke(cli.main, ["inspect", "--cache", str(cache), "--dataset", dataset, "--video", video,
                                         *map(str, more), "--out", str(Path(cache).parent / "png")])


def test_inspect_tells_a_typo_in_a_name_from_a_video_to_extract(tmp_path):
    """A cache, dataset or video id that is not there is said to be so, with what is there: the answer was `features
    ... --stages align`, extracting again after a typo. Only a video the dataset holds gets the features command."""
    cache = tmp_path / "c"
    _cache(cache)   # v1 done, bad failed
    res = _inspect(tmp_path / "nope")
    assert res.exit_code == 2 and f"{tmp_path / 'nope'}: no such cache folder" in res.output
    res = _inspect(cache, "dmeo")
    assert res.exit_code == 2 and "dataset 'dmeo' is not in the cache (its datasets: demo;" in res.output
    res = _inspect(cache, "demo", "v11")
    assert res.exit_code == 2 and "no video 'v11' in dataset 'demo' (2 videos) (did you mean v1?" in res.output
    res = _inspect(cache, "demo", "x")
    assert res.exit_code == 2 and "no video 'x'" in res.output and "its videos include bad, v1" in res.output
    assert all("cli.py features" not in r.output for r in (_inspect(tmp_path / "nope"), _inspect(cache, "dmeo"),
                                                              _inspect(cache, "demo", "v11")))
    res = _inspect(cache, "demo", "bad")   # in the dataset, its extraction failed: why, then the command
    assert res.exit_code == 2 and "the extraction of video 'bad' failed: bad.mp4: empty file" in res.output
    assert f"python cli.py features --dataset demo --cache {cache} --stages align,motion,spatial" in res.output


def test_inspect_lists_the_variants_a_video_has_before_computing_a_new_one(tmp_path):
    """--input dphase@nope (a typo) named only the command that computes a variant "nope": the video's ΔPhase
    variants come first, then how to compute another."""
    cache = _stale_cache(tmp_path / "c")
    g = store.open_video(cache, "demo", "v1", mode="r+")
    store.create_array(g, "dphase_s0@mw9", 40)[:] = 0.1
    store.set_fingerprints(g, {"dphase_s0@mw9": "abc"})
    res = _inspect(cache, "demo", "v1", "--input", "dphase@nope")
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "video 'v1' has no dphase@nope; its ΔPhase: dphase, dphase@mw9 (pass one of them as --input; or " \
           "compute dphase@nope first: `python cli.py features --dataset demo" in text
    assert "--motion-variant nope` (a name not made before takes the --motion-* flags that define it)" in text
    res = _inspect(cache, "demo", "v1", "--input", "dphase@mw9")
    assert res.exit_code == 0, res.output


def test_the_labels_plot_of_an_unlabelled_entry_spans_the_video_and_says_it(tmp_path):
    """A test entry has no labels: only the no-face shading is drawn, which alone set the time axis to the frames
    without a face (0.8-1.57 s of a 3.2 s video looked like the whole video)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.inspect_video import labels_figure

    valid = np.ones(96, bool)
    valid[24:48] = False
    arrays = {"valid": valid, "face48": np.zeros((96, 48, 48), "u1"), "labels": np.full((96, 2), np.nan, "f4")}
    store.write_video(tmp_path, "aw2", "t_left", arrays, {"split": "test", "fps": 30.0})
    g = store.open_video(tmp_path, "aw2", "t_left")
    fig = labels_figure(plt, g, lambda name, lo, hi: g[name][lo:hi], "t_left", 96, valid)
    assert fig.axes[0].get_xlim() == (0.0, 95 / 30)
    assert fig.axes[0].get_title() == "t_left: 96 frames, 0 labelled, 72 with a face; no labels (an unlabelled entry)"
    plt.close(fig)


def test_inspect_refuses_predictions_not_made_for_this_video(tmp_path):
    """--predictions drawn against this video's labels must be this video's, from this extraction of it."""
    import pandas as pd

    from pipeline.inspect_video import inspect_video

    cache = _stale_cache(tmp_path / "c")
    frames = pd.DataFrame({"frame": np.arange(40), "arousal": 0.1, "valence": -0.1, "valid": True})
    frames.assign(video="v2").to_csv(tmp_path / "run.csv", index=False)              # a run that held out v2 only
    frames.to_csv(tmp_path / "v2.csv", index=False)                                  # predict's file of v2
    frames[:39].to_csv(tmp_path / "v1.csv", index=False)                             # another extraction: 39 frames
    for path, match in (("run.csv", "no predictions for video 'v1' \\(it holds v2\\)"),
                        ("v2.csv", "holds the predictions of 'v2'"),
                        ("v1.csv", "39 predicted frames of 'v1' \\(up to frame 38\\), but the cached video has 40")):
        with pytest.raises(BadInputError, match=match):
            inspect_video(cache, "demo", "v1", tmp_path / "png", predictions=tmp_path / path)
    frames.to_csv(tmp_path / "v1.csv", index=False)
    assert len(inspect_video(cache, "demo", "v1", tmp_path / "png", predictions=tmp_path / "v1.csv")) == 3


def test_inspect_checks_the_predictions_file_before_it_writes_a_png(tmp_path):
    """--predictions naming a file that is not there, is not a table or has another frame count: one line naming the
    file (exit 2), and no PNG written (a FileNotFoundError traceback came after the faces and motion PNGs)."""
    import pandas as pd

    cache = _stale_cache(tmp_path / "c")
    look = tmp_path / "png"
    (tmp_path / "cut.parquet").write_bytes(b"PAR1 cut short")
    pd.DataFrame({"frame": np.arange(39), "arousal": 0.1, "valence": 0.1}).to_csv(tmp_path / "v1.csv", index=False)
    for name, what in (("missing.csv", "no such predictions file"), ("cut.parquet", "cannot be read as Parquet"),
                       ("v1.csv", "39 predicted frames")):
        res = CliRunner().invoke(cli.main, ["inspect", "--cache", str(cache), "--dataset", "demo", "--video", "v1",
                                            "--predictions", str(tmp_path / name), "--out", str(look)])
        assert res.exit_code == 2, res.output
        assert f"{tmp_path / name}: {what}" in " ".join(res.output.split()), res.output
        assert not look.exists()


def test_inspect_pngs_say_what_made_them(tmp_path, monkeypatch):
    """Each PNG says, in a caption line and in its Description, the cache, dataset, video, the arrays drawn with their
    fingerprints from the group, and the predictions file drawn beside the labels (the project's rule for plots)."""
    import matplotlib.figure
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(5)
    arrays = {"valid": np.ones(40, bool), "face48": rng.integers(0, 255, (40, 48, 48), dtype="u1"),
              "dphase_s0@mw9": rng.standard_normal((40, 2, 48, 48)).astype("f2"),
              "labels": rng.uniform(-1, 1, (40, 2)).astype("f4")}
    cache = tmp_path / "c"
    store.write_video(cache, "demo", "v1", arrays, {"split": "train", "fps": 30.0},
                      {"valid": "fp-valid", "face48": "fp-face48", "dphase_s0@mw9": "fp-mw9", "labels": "fp-labels"})
    store.write_index(cache, "demo", [store.index_row(cache, "demo", "v1")])
    pd.DataFrame({"frame": np.arange(40), "arousal": 0.1, "valence": 0.2}).to_csv(tmp_path / "v1.csv", index=False)
    captions, savefig = {}, matplotlib.figure.Figure.savefig

    def spy(fig, path, *a, **k):   # the caption drawn in the figure, as it is saved
        captions[Path(path).name] = fig._suptitle.get_text() if fig._suptitle else None
        return savefig(fig, path, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    res = _inspect(cache, "demo", "v1", "--input", "dphase@mw9", "--predictions", tmp_path / "v1.csv")
    assert res.exit_code == 0, res.output
    head = f"cache {cache}, dataset demo, video v1\narrays: "
    want = {"v1_faces_mw9.png": "face48 fp-face48, dphase_s0@mw9 fp-mw9, valid fp-valid",
            "v1_motion_mw9.png": "dphase_s0@mw9 fp-mw9, valid fp-valid",
            "v1_labels.png": f"labels fp-labels, valid fp-valid; predictions {tmp_path / 'v1.csv'}"}
    for name, drawn in want.items():
        assert Image.open(tmp_path / "png" / name).text.get("Description") == head + drawn
        assert captions[name] == head + drawn


def test_predictions_are_drawn_on_the_labels_clock(tmp_path):
    """A train run's predictions have frames, not times: at 25 fps they belong at frame / 25 (they were drawn at
    frame / 30, beside labels at frame / 25)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from pipeline.inspect_video import labels_figure

    arrays = {"valid": np.ones(50, bool), "face48": np.zeros((50, 48, 48), "u1"),
              "labels": np.zeros((50, 2), "f4")}
    store.write_video(tmp_path, "omg", "u1", arrays, {"split": "train", "fps": 25.0})
    pd.DataFrame({"video": "u1", "frame": np.arange(50), "arousal": 0.1, "valence": 0.2,
                  "valid": True}).to_parquet(tmp_path / "predictions.parquet")
    g = store.open_video(tmp_path, "omg", "u1")
    fig = labels_figure(plt, g, lambda name, lo, hi: g[name][lo:hi], "u1", 50, arrays["valid"],
                        tmp_path / "predictions.parquet")
    label, prediction = fig.axes[0].lines[:2]
    np.testing.assert_allclose(prediction.get_xdata(), label.get_xdata())
    assert label.get_xdata()[-1] == pytest.approx(49 / 25)
    plt.close(fig)


def test_a_video_labelled_as_a_whole_draws_its_label_and_its_one_prediction(tmp_path):
    """An OMG utterance has one label (attrs video_labels; its labels array is NaN): inspect said "no labels (an
    unlabelled entry)" and refused predict's predictions.csv. Both are drawn as level lines over the video."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from pipeline.inspect_video import labels_figure

    arrays = {"valid": np.ones(50, bool), "face48": np.zeros((50, 48, 48), "u1"),
              "labels": np.full((50, 2), np.nan, "f4")}
    store.write_video(tmp_path, "omg", "y__u1", arrays, {"split": "train", "fps": 25.0,
                                                         "video_labels": {"arousal": 0.6, "valence": -0.3}})
    pd.DataFrame({"video": ["y__u0", "y__u1"], "arousal": [0.9, 0.2], "valence": [0.9, 0.1],
                  "snippets": [2, 2]}).to_csv(tmp_path / "predictions.csv", index=False)
    g = store.open_video(tmp_path, "omg", "y__u1")
    fig = labels_figure(plt, g, lambda name, lo, hi: g[name][lo:hi], "y__u1", 50, arrays["valid"],
                        tmp_path / "predictions.csv")
    assert fig.axes[0].get_title() == "y__u1: 50 frames, one label for the video (arousal 0.600, valence -0.300), " \
                                      "50 with a face"
    for ax, (label, pred) in zip(fig.axes, ((0.6, 0.2), (-0.3, 0.1))):
        drawn_label, drawn_pred = ax.lines[:2]
        np.testing.assert_allclose(drawn_label.get_ydata(), label)
        np.testing.assert_allclose(drawn_pred.get_ydata(), pred)
        assert drawn_pred.get_xdata()[-1] == pytest.approx(49 / 25)
    plt.close(fig)


def test_predictions_outside_the_labels_range_are_drawn_inside_the_axes(tmp_path):
    """A model's outputs are not bounded: an OMG utterance predicted at arousal -1.7 (a briefly trained model) sat
    below inspect's fixed [-1.05, 1.05] axis, so its labels PNG showed "prediction" in the legend and no line; a
    per-frame prediction peaking at 1.4 was cut off the same way. The axis now spans every value drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from pipeline.inspect_video import labels_figure

    arrays = {"valid": np.ones(50, bool), "face48": np.zeros((50, 48, 48), "u1"),
              "labels": np.full((50, 2), np.nan, "f4")}
    store.write_video(tmp_path, "omg", "y__u1", arrays, {"split": "test", "fps": 25.0,
                                                         "video_labels": {"arousal": 0.7, "valence": -0.5}})
    pd.DataFrame({"video": ["y__u1"], "arousal": [-1.7], "valence": [-2.7],
                  "snippets": [2]}).to_csv(tmp_path / "predictions.csv", index=False)
    frames = {"valid": np.ones(50, bool), "face48": np.zeros((50, 48, 48), "u1"), "labels": np.zeros((50, 2), "f4")}
    store.write_video(tmp_path, "affwild", "v1", frames, {"split": "train", "fps": 25.0})
    peak = np.where(np.arange(50) == 20, 1.4, 0.1)
    pd.DataFrame({"video": "v1", "frame": np.arange(50), "arousal": peak, "valence": -peak,
                  "valid": True}).to_parquet(tmp_path / "predictions.parquet")
    for ds, video, path in (("omg", "y__u1", "predictions.csv"), ("affwild", "v1", "predictions.parquet")):
        g = store.open_video(tmp_path, ds, video)
        fig = labels_figure(plt, g, lambda name, lo, hi, g=g: g[name][lo:hi], video, 50, np.ones(50, bool),
                            tmp_path / path)
        for ax in fig.axes:
            lo, hi = ax.get_ylim()
            drawn = np.concatenate([line.get_ydata() for line in ax.lines])
            assert lo <= np.nanmin(drawn) and np.nanmax(drawn) <= hi, (video, ax.get_ylim(), drawn)
            assert lo <= -1 and hi >= 1                      # the labels' range is always shown
        plt.close(fig)


def test_the_motion_curve_is_not_drawn_across_frames_without_a_face(tmp_path):
    """inspect's smoothed motion energy: NaN where there is no ΔPhase, and beside a gap made of real rows only (a
    constant energy stays that constant up to the gap, where interpolating towards a spike bent it)."""
    from pipeline.inspect_video import motion_energy

    valid = np.ones(96, bool)
    valid[24:48] = False
    dp = np.full((96, 2, 48, 48), 0.01, "f2")
    dp[23] = 0.1   # a spike on the last row before the gap, as a face lost mid-motion gives
    store.write_video(tmp_path, "aw2", "t", {"valid": valid, "dphase_s0": dp}, {"split": "test", "fps": 30.0})
    g = store.open_video(tmp_path, "aw2", "t")
    energy, rows, smooth = motion_energy(g, lambda name, lo, hi: g[name][lo:hi], 96, valid, "dphase_s0")
    assert rows.sum() == 96 - 1 - 25 and np.isnan(smooth[~rows]).all()
    np.testing.assert_allclose(smooth[49:], np.float32(np.float16(0.01)), rtol=1e-6)   # after the gap: only 0.01s


def test_the_motion_plot_of_a_video_without_a_face_says_so(tmp_path):
    """A video with no face in any frame has no ΔPhase row: its motion plot was empty axes (0 to 1 s, whatever the
    video's length) that said nothing; it says why, over the video's time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.inspect_video import motion_figure

    arrays = {"valid": np.zeros(90, bool), "dphase_s0": np.zeros((90, 2, 48, 48), "f2")}
    store.write_video(tmp_path, "demo", "dark", arrays, {"split": "train", "fps": 30.0})
    g = store.open_video(tmp_path, "demo", "dark")
    fig = motion_figure(plt, g, lambda name, lo, hi: g[name][lo:hi], "dark", 90, arrays["valid"], None, "dphase_s0")
    assert [t.get_text() for t in fig.axes[0].texts] == ["no face in any frame: no ΔPhase to draw"]
    assert fig.axes[0].get_xlim() == (0.0, 89 / 30)
    plt.close(fig)
    valid = np.arange(90) % 2 == 0   # a face every other frame: no two in a row, so no ΔPhase either
    fig = motion_figure(plt, g, lambda name, lo, hi: g[name][lo:hi], "dark", 90, valid, None, "dphase_s0")
    assert [t.get_text() for t in fig.axes[0].texts] == ["no two frames in a row with a face: no ΔPhase to draw"]
    plt.close(fig)


def test_info_lists_variants_and_where_they_are_usable(tmp_path):
    cache = _stale_cache(tmp_path)
    rng = np.random.default_rng(3)
    g = store.open_video(cache, "demo", "v1", mode="r+")
    a = store.create_array(g, "dphase_s0@mw9", 40)
    a[:] = rng.standard_normal((40, 2, 48, 48)).astype("f2")
    store.set_fingerprints(g, {"dphase_s0@mw9": "abc"})
    g.attrs["made_with"] = {"dphase_s0@mw9": {"motion_variant": "mw9", "motion": {"mean_window": 9}}}
    res = CliRunner().invoke(cli.main, ["info", "--cache", str(cache)])
    assert res.exit_code == 0, res.output
    lines = {ln.split()[0]: ln.split()[1:] for ln in res.output.splitlines()[-8:] if ln.startswith("      ")}
    assert lines["dphase"][0] == "1/2"                  # v2's is stale
    assert lines["dphase@mw9"] == ["1/1", "mean_window=9"]
