"""The cache schema round-trips through a real Zarr store on disk."""
import numpy as np
import pytest

from pipeline import store


def _arrays(T, rng):
    return {
        "valid": rng.random(T) > 0.1,
        "landmarks": rng.random((T, 68, 2)).astype("f4"),
        "face48": rng.integers(0, 255, (T, 48, 48), dtype="u1"),
        "resnet50": rng.random((T, 2048)).astype("f2"),
        "dphase_s0": rng.standard_normal((T, 2, 48, 48)).astype("f2"),
        "dphase_s1": rng.standard_normal((T, 2, 24, 24)).astype("f2"),
        "labels": rng.uniform(-1, 1, (T, 2)).astype("f4"),
    }


def test_write_read_roundtrip_and_index(tmp_path):
    rng = np.random.default_rng(0)
    arrays = _arrays(300, rng)   # more than one chunk, with a tail
    store.write_video(tmp_path, "ds", "v1", arrays, {"split": "train", "fps": 30.0}, {"resnet50": "abc"})
    g = store.open_video(tmp_path, "ds", "v1")
    assert g.attrs["status"] == "done" and g.attrs["n_frames"] == 300
    for name, data in arrays.items():
        assert g[name].dtype == np.dtype(store.SCHEMA[name][0])
        assert g[name].chunks[0] == store.CHUNK_T
        np.testing.assert_array_equal(g[name][:], data)
    store.write_index(tmp_path, "ds", [store.index_row(tmp_path, "ds", "v1")])
    idx = store.done_videos(tmp_path, "ds")
    assert list(idx.video) == ["v1"] and idx.n_frames[0] == 300 and idx.n_valid[0] == arrays["valid"].sum()
    assert store.video_fingerprints(tmp_path, "ds", "v1") == {"resnet50": "abc"}


def test_partial_group_is_not_done(tmp_path):
    w = store.VideoWriter(tmp_path, "ds", "v2", ["valid"], {})
    w.append("valid", np.ones(10, bool))
    assert store.group_status(tmp_path, "ds", "v2") == "writing"
    assert store.group_status(tmp_path, "ds", "nope") is None


def test_schema_shape_is_enforced(tmp_path):
    w = store.VideoWriter(tmp_path, "ds", "v3", ["face48"], {})
    with pytest.raises(ValueError, match="schema"):
        w.append("face48", np.zeros((4, 32, 32), "u1"))


def test_missing_cache_says_what_to_run(tmp_path):
    from features.errors import BadInputError
    with pytest.raises(BadInputError, match="cli.py features"):
        store.done_videos(tmp_path, "demo")
