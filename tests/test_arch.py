"""`--arch released`: the released code's temporal CNN (wtomin/MIMAMO-Net, Aff-wild-exps/network.py, PhaseNet(48,
2 * num_phase)) layer by layer, trained, named in metrics.json and the ablation table, and rebuilt from its
checkpoint by `predict --cache` (the same predictions as the run's own).

A real Zarr cache (train/synth.py writes it through pipeline/store.py), the real trainer and CLI.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from cli import main
from train.model import MimamoNet
from train.synth import make_cache

# The released PhaseNet at 48x48 with num_phase=12 (24 channels: 2 orientations x 12 rows): three blocks of
# conv3x3 (stride 1) + conv3x3 (stride 2), 64/128/256 channels, the 24x24 maps concatenated after block 1,
# a 6x6 map averaged, then two FC 256 layers. (out, in, kh, kw) and stride of each conv, in order.
RELEASED_CONVS = [((64, 24, 3, 3), 1), ((64, 64, 3, 3), 2),
                  ((128, 64 + 24, 3, 3), 1), ((128, 128, 3, 3), 2),
                  ((256, 128, 3, 3), 1), ((256, 256, 3, 3), 2)]


def _convs(model: MimamoNet) -> list:
    return [(tuple(m.weight.shape), m.stride[0]) for m in model.temporal.blocks.modules()
            if isinstance(m, torch.nn.Conv2d)]


def _last_map(model: MimamoNet, window: int) -> tuple:
    """The shape of the last conv block's output for one 48x48 (+ 24x24) motion window."""
    seen = {}

    def hook(module, inputs, output):   # returns None: the output goes on unchanged
        seen["shape"] = tuple(output.shape)

    model.temporal.blocks[-1].register_forward_hook(hook)
    model.temporal.eval()
    with torch.no_grad():
        feat = model.temporal(torch.zeros(2, 2 * window, 48, 48), torch.zeros(2, 2 * window, 24, 24))
    return seen["shape"], tuple(feat.shape)


def test_released_temporal_cnn_is_the_released_phasenet_layer_by_layer():
    rel = MimamoNet(streams="temporal", arch="released", width=64, window=12)
    assert _convs(rel) == RELEASED_CONVS
    assert _last_map(rel, 12) == ((2, 256, 6, 6), (2, 256))            # AvgPool2d(6) in the released code
    fcs = [tuple(m.weight.shape) for m in rel.temporal.fc.modules() if isinstance(m, torch.nn.Linear)]
    assert fcs == [(256, 256), (256, 256)]
    paper = MimamoNet(streams="temporal", arch="paper", width=64, window=12)
    assert _convs(paper) == [*RELEASED_CONVS, ((256, 256, 3, 3), 1), ((256, 256, 3, 3), 2)]
    assert _last_map(paper, 12)[0] == (2, 256, 3, 3)                   # one more halving: the paper's 4 blocks


@pytest.fixture(scope="module")
def released_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("arch")
    make_cache(tmp / "c", "synth", videos=5, frames=60, test_videos=1)
    flags = ["--cache", str(tmp / "c"), "--dataset", "synth", "--streams", "temporal", "--epochs", "1", "--lr", "0.1",
             "--folds", "2", "--width", "4", "--window", "4", "--batch-size", "4", "--num-workers", "0",
             "--threads", "1", "--no-plots"]
    r = CliRunner().invoke(main, ["train", *flags, "--arch", "released", "--out", str(tmp / "rel")])
    assert r.exit_code == 0, r.output
    return tmp, flags


def test_a_released_run_says_so_and_predict_rebuilds_its_model(released_run):
    tmp, _ = released_run
    m = json.loads((tmp / "rel" / "metrics.json").read_text())
    assert m["arch"] == "released" and m["identity"]["config"]["arch"] == "released" and m["input"] == "dphase"
    ck = torch.load(tmp / "rel" / "best.pt", weights_only=True)
    assert ck["model_args"]["arch"] == "released"
    assert len([k for k, v in ck["model"].items() if k.startswith("temporal.blocks.") and v.ndim == 4]) == 6
    r = CliRunner().invoke(main, ["predict", "--cache", str(tmp / "c"), "--dataset", "synth", "--split", "test",
                                  "--checkpoint", str(tmp / "rel" / "best.pt"), "--out", str(tmp / "pred")])
    assert r.exit_code == 0, r.output
    own = pd.read_parquet(tmp / "rel" / "predictions.parquet")
    (video,) = own.video.unique()
    again = pd.read_csv(tmp / "pred" / f"{video}.csv")
    got = again[again.valid][["arousal", "valence"]].to_numpy()
    want = own[own.valid][["arousal", "valence"]].to_numpy()
    assert got.shape == want.shape and abs(got - want).max() < 1e-4


def test_an_ablation_over_architectures_names_each_rows(released_run):
    tmp, flags = released_run
    r = CliRunner().invoke(main, ["ablate", *flags, "--grid", "arch=paper,released", "--grid", "input=dphase",
                                  "--fold-ids", "0", "--out", str(tmp / "abl")])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp / "abl" / "ablation.csv")
    assert list(zip(table.arch, table.input)) == [("paper", "dphase"), ("released", "dphase")]
    md = (tmp / "abl" / "ablation.md").read_text()
    assert "| arch | input |" in md and "| released | dphase |" in md
    m = json.loads((tmp / "abl" / "arch=released_input=dphase" / "fold0" / "metrics.json").read_text())
    assert m["arch"] == "released" and table.ccc_arousal[1] == pytest.approx(m["ccc_arousal"], abs=1e-4)


def test_a_spatial_only_row_names_no_architecture_or_input_but_keeps_its_grid_axes():
    from train.ablate import _labels
    from train.config import TrainConfig

    # the axis's own column keeps the cell's value (tests/test_ablate.py): only the other one says '-'
    assert _labels({"input": "dphase@paper", "streams": "spatial"}, TrainConfig()) == {"arch": "-"}
    assert _labels({"arch": "released", "streams": "spatial"}, TrainConfig()) == {"input": "-"}
    assert _labels({"input": "dphase@paper", "streams": "temporal"}, TrainConfig(arch="released")) == {
        "arch": "released"}
