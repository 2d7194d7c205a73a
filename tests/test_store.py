"""The cache schema round-trips through a real Zarr store on disk."""
import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

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


def _done_group(tmp_path, T=40):
    arrays = _arrays(T, np.random.default_rng(1))
    store.write_video(tmp_path, "ds", "v", arrays, {"split": "train"},
                      {n: f"old-{n}" for n in arrays})
    return arrays


def test_a_swap_stopped_half_way_leaves_the_swapped_arrays_visibly_unusable(tmp_path):
    old = _done_group(tmp_path)
    staged = store.staging_dir(tmp_path, "ds", "v")
    g = zarr.open_group(LocalStore(staged), mode="w")
    store.create_array(g, "dphase_s0", len(old["dphase_s0"]))[:] = np.zeros_like(old["dphase_s0"])
    # dphase_s1 was never staged: the swap stops after the first rename, as a kill between the renames would
    with pytest.raises(FileNotFoundError):
        store.swap_arrays(tmp_path, "ds", "v", staged, {"dphase_s0": "new-0", "dphase_s1": "new-1"}, {})
    swapped = store.open_video(tmp_path, "ds", "v")
    assert not swapped["dphase_s0"][:].any()            # the new array is in place...
    with pytest.raises(store.UnusableVideo, match="dphase_s0 is stale"):   # ...but not read under the old fingerprint
        store.check_arrays(tmp_path, "ds", "v", ["dphase_s0"])
    with pytest.raises(store.UnusableVideo, match="dphase_s1 is missing"):   # moved out, its replacement never came
        store.check_arrays(tmp_path, "ds", "v", ["dphase_s1"])
    assert store.check_arrays(tmp_path, "ds", "v", ["resnet50"]) == {"resnet50": "old-resnet50"}


def test_an_array_shorter_than_the_video_is_refused(tmp_path):
    _done_group(tmp_path)
    store.open_video(tmp_path, "ds", "v", mode="r+")["resnet50"].resize((30, 2048))
    with pytest.raises(store.UnusableVideo, match="resnet50 has 30 rows for 40 frames"):
        store.check_arrays(tmp_path, "ds", "v", ["resnet50", "valid"])


def test_a_full_disk_fails_the_index_write_with_a_message_and_keeps_the_index(tmp_path):
    """index.parquet written to a full disk (a real small tmpfs): the `features` run stopped with a pyarrow
    traceback and left its half-written temporary file, which held on to space. Now a message names the index and
    what to do; the index is as before and no temporary file is left."""
    from small_disk import fill, mount_tmpfs, unmount

    from features.errors import BadInputError

    disk = tmp_path / "disk"
    disk.mkdir()
    if not mount_tmpfs(disk, 512):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        rows = [{"video": f"v{k:04d}", "split": "train", "status": "done", "error": "x" * 200} for k in range(2000)]
        index = store.write_index(disk, "ds", rows[:1])
        before = index.read_bytes()
        fill(disk / "filler")
        with pytest.raises(BadInputError) as e:
            store.write_index(disk, "ds", rows)
        said = str(e.value)
        assert str(index) in said and "No space left on device" in said and "free space" in said, said
        assert index.read_bytes() == before
        assert sorted(p.name for p in index.parent.iterdir()) == ["index.parquet"]
    finally:
        unmount(disk)
