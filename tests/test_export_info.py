"""export --format h5 copies the cache faithfully; info shows datasets and what a cache holds."""
import h5py
import numpy as np
from click.testing import CliRunner

import cli
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
    assert "1 videos" in res.output
    with h5py.File(out) as h5:
        assert list(h5) == ["v1"]                      # failed videos are not exported
        for name, data in arrays.items():
            np.testing.assert_array_equal(h5["v1"][name][:], data)
        assert h5["v1"].attrs["status"] == "done"


def test_info_lists_datasets_and_cache(tmp_path):
    _cache(tmp_path)
    res = CliRunner().invoke(cli.main, ["info", "--cache", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for word in ("torch", "CUDA available", "affwild2", "AFFWILD2_ROOT", "omg"):
        assert word in res.output
    assert "1 done (300 frames), 1 failed" in res.output and "bad.mp4: empty file" in res.output


def test_unknown_dataset_lists_known_ones(tmp_path):
    res = CliRunner().invoke(cli.main, ["features", "--dataset", "nope", "--cache", str(tmp_path)])
    assert res.exit_code == 2 and "known datasets: affwild, affwild2, demo, omg" in res.output
