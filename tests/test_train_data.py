"""The sequence loader slices the right frames from a real Zarr cache and covers every test frame once."""
import numpy as np
import pytest
import torch

from pipeline import store
from train import data


def _coded_cache(path, n=300):
    """Arrays whose values encode the frame index, so slices can be checked exactly."""
    t = np.arange(n, dtype=np.float32)
    code = (t % 2048).astype("f2")   # float16 holds integers up to 2048 exactly
    arrays = {
        "valid": np.ones(n, bool),
        "resnet50": np.tile(code[:, None], (1, 2048)),
        "dphase_s0": np.broadcast_to(code[:, None, None, None], (n, 2, 48, 48)).copy(),
        "dphase_s1": np.broadcast_to(code[:, None, None, None], (n, 2, 24, 24)).copy(),
        "phase_s0": np.broadcast_to(code[:, None, None, None], (n, 2, 48, 48)).copy(),
        "phase_s1": np.broadcast_to(code[:, None, None, None], (n, 2, 24, 24)).copy(),
        "flow": np.broadcast_to(code[:, None, None, None], (n, 2, 48, 48)).copy(),
        "labels": np.stack([t, -t], 1),
    }
    arrays["dphase_s0"][:, 1] *= -1   # orientation 1 carries -t, to check the channel order
    arrays["valid"][17] = False
    arrays["labels"][40] = np.nan
    store.write_video(path, "ds", "a", arrays, {"split": "train"})
    store.write_index(path, "ds", [store.index_row(path, "ds", "a")])
    return n


def test_window_span_is_centred():
    assert data.window_span(12) == (5, 6)      # differences t-5..t+6: frames t-6..t+6
    assert data.window_span(4) == (1, 2) and data.window_span(16) == (7, 8)


@pytest.mark.parametrize("window", [4, 12])
def test_windows_slice_the_right_frames(tmp_path, window):
    n = _coded_cache(tmp_path)
    rows = data.video_table(tmp_path, "ds")
    ds = data.SequenceDataset(tmp_path, "ds", rows, window=window, cache_mb=1)
    left, right = data.window_span(window)
    for i in range(len(ds)):
        it = ds[i]
        start = ds.items[i][1]
        b = data.collate([it])
        w0 = data.windows(b["m0"].float(), window)[0]      # [L, 2N, 48, 48]
        w1 = data.windows(b["m1"].float(), window)[0]
        assert w0.shape == (64, 2 * window, 48, 48) and w1.shape == (64, 2 * window, 24, 24)
        for j, t in enumerate(range(start, start + 64)):
            want = np.array([k if 0 <= k < n else 0 for k in range(t - left, t + right + 1)], np.float32)
            np.testing.assert_array_equal(w0[j, :window, 5, 5].numpy(), want)          # orientation 0, time k
            np.testing.assert_array_equal(w0[j, window:, 0, 0].numpy(), -want)        # orientation 1
            np.testing.assert_array_equal(w1[j, :window, 3, 3].numpy(), want)
            assert it["rgb"][j, 100] == t
            if t == 40:
                assert np.isnan(it["labels"][j]).all()       # the NaN label stays NaN
            else:
                assert it["labels"][j].tolist() == [t, -t]
            assert it["full"][j] == (t - left >= 1 and t + right < n)
            assert it["mask"][j] == (t not in (17, 40))


def test_phase_replicates_edges_and_flow_has_one_scale(tmp_path):
    _coded_cache(tmp_path)
    rows = data.video_table(tmp_path, "ds")
    ph = data.SequenceDataset(tmp_path, "ds", rows, window=12, input="phase")[0]
    assert ph["m0"][:6, 0, 0, 0].tolist() == [0, 0, 0, 0, 0, 0] and ph["m0"][6, 0, 0, 0] == 1
    fl = data.SequenceDataset(tmp_path, "ds", rows, window=8, input="flow")[0]
    assert "m1" not in fl and fl["m0"].shape == (64 + 7, 2, 48, 48)


@pytest.mark.parametrize("n", [1, 50, 64, 65, 128, 300, 1000])
def test_test_sequences_cover_every_frame_once(n):
    seqs = data.sequences(n, 64, 32, test=True)
    count = np.zeros(n, int)
    for s, lo, hi in seqs:
        assert s <= lo <= hi <= min(s + 64, n) and s >= 0
        count[lo:hi] += 1
    assert (count == 1).all()
    train = data.sequences(n, 64, 32, test=False)
    assert {s for s, _, _ in train} >= {0} and max(s for s, _, _ in train) == max(n - 64, 0)


def test_loader_with_workers_predicts_every_frame_once(tmp_path):
    n = _coded_cache(tmp_path, 300)
    rows = data.video_table(tmp_path, "ds")
    ds = data.SequenceDataset(tmp_path, "ds", rows, window=4, test=True)
    seen = np.zeros(n, int)
    for b in data.loader(ds, batch_size=2, num_workers=2):
        assert b["rgb"].dtype == torch.float16
        fr = b["frames"][b["own"]].numpy()
        np.add.at(seen, fr, 1)
        np.testing.assert_array_equal(b["rgb"][b["own"]][:, 0].numpy(), fr)
    assert (seen == 1).all()


def test_chunk_cache_is_bounded(tmp_path):
    _coded_cache(tmp_path, 700)
    cc = data.ChunkCache(tmp_path, "ds", max_mb=3)     # a dphase_s0 chunk is 4.7 MB: at most one kept
    a = cc.read("a", "dphase_s0", 250, 520)
    assert a.shape[0] == 270 and a[0, 0, 0, 0] == 250 and a[-1, 0, 0, 0] == 519
    assert len(cc.lru) == 1
