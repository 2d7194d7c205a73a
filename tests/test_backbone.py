"""The FER+ ResNet50 encoder: published layout, strict loading, an independent functional reference, random mode."""
import hashlib
import json

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from features.backbone import (
    DEFAULT_WEIGHTS,
    ResNet50FerPlusDag,
    SpatialEncoder,
    backbone_parameter_count,
    resolve_weights,
)
from features.errors import BadInputError

MEAN = (131.0912, 103.8827, 91.4953)
# The published network, written out here independently of features/backbone.py:
# (stage, units, bottleneck width, output width, stride of the first unit's 1x1 reduce and 1x1 proj)
SPEC = ((2, 3, 64, 256, 1), (3, 4, 128, 512, 2), (4, 6, 256, 1024, 2), (5, 3, 512, 2048, 2))


def published_shapes():
    """Every key of resnet50_ferplus_dag.pth (no num_batches_tracked) with its shape."""
    shapes = {"conv1_7x7_s2.weight": (64, 3, 7, 7)}

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}_bn.{p}"] = (c,)

    bn("conv1_7x7_s2", 64)
    c_in = 64
    for stage, units, w, c_out, _ in SPEC:
        for i in range(1, units + 1):
            p = f"conv{stage}_{i}"
            shapes[f"{p}_1x1_reduce.weight"] = (w, c_in, 1, 1)
            bn(f"{p}_1x1_reduce", w)
            shapes[f"{p}_3x3.weight"] = (w, w, 3, 3)
            bn(f"{p}_3x3", w)
            shapes[f"{p}_1x1_increase.weight"] = (c_out, w, 1, 1)
            bn(f"{p}_1x1_increase", c_out)
            if i == 1:
                shapes[f"{p}_1x1_proj.weight"] = (c_out, c_in, 1, 1)
                bn(f"{p}_1x1_proj", c_out)
            c_in = c_out
    shapes["classifier.weight"] = (8, 2048, 1, 1)
    shapes["classifier.bias"] = (8,)
    return shapes


@pytest.fixture(scope="module")
def published_sd():
    """A state dict with the published names and shapes, random values, plausible BN statistics."""
    g = torch.Generator().manual_seed(123)
    sd = {}
    for k, shape in published_shapes().items():
        if k.endswith("running_var"):
            v = torch.rand(shape, generator=g) * 1.5 + 0.5
        elif k.endswith("_bn.weight"):
            v = torch.rand(shape, generator=g) + 0.5
        elif k.endswith(("_bn.bias", "running_mean", "classifier.bias")):
            v = torch.randn(shape, generator=g) * 0.1
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            v = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        sd[k] = v
    return sd


@pytest.fixture(scope="module")
def weights_file(published_sd, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50_ferplus_dag.pth"
    torch.save(published_sd, path)
    return path


def reference_features(sd, faces):
    """The published forward pass in torch.nn.functional, float64: conv-BN-ReLU bottlenecks, ReLU after the add."""
    sd = {k: v.double() for k, v in sd.items()}
    x = torch.from_numpy(faces).double().permute(0, 3, 1, 2) - torch.tensor(MEAN).double().view(1, 3, 1, 1)

    def cbn(x, name, stride=1, padding=0, relu=True):
        y = F.conv2d(x, sd[f"{name}.weight"], stride=stride, padding=padding)
        b = f"{name}_bn"
        y = F.batch_norm(y, sd[f"{b}.running_mean"], sd[f"{b}.running_var"], sd[f"{b}.weight"], sd[f"{b}.bias"],
                         training=False, eps=1e-5)
        return F.relu(y) if relu else y

    x = cbn(x, "conv1_7x7_s2", stride=2, padding=3)
    x = F.max_pool2d(x, 3, stride=2, padding=0, ceil_mode=True)
    assert x.shape[-2:] == (56, 56)
    for stage, units, _, _, stride in SPEC:
        for i in range(1, units + 1):
            p, s = f"conv{stage}_{i}", (stride if i == 1 else 1)
            y = cbn(x, f"{p}_1x1_reduce", stride=s)
            y = cbn(y, f"{p}_3x3", padding=1)
            y = cbn(y, f"{p}_1x1_increase", relu=False)
            short = cbn(x, f"{p}_1x1_proj", stride=s, relu=False) if i == 1 else x
            x = F.relu(y + short)
    assert x.shape[-2:] == (7, 7)
    return F.avg_pool2d(x, 7, stride=1).flatten(1).numpy()


def faces(n, seed=0):
    """Seeded smooth uint8 RGB crops [n, 224, 224, 3]."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (n, 3, 14, 14)))
    img = F.interpolate(coarse, size=(224, 224), mode="bilinear", align_corners=False)
    img = img + torch.from_numpy(rng.normal(0, 15, img.shape))
    return img.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def test_parameter_count_and_keys(published_sd):
    m = ResNet50FerPlusDag()
    assert backbone_parameter_count(m) == 23_508_032
    assert {k for k in m.state_dict() if not k.endswith("num_batches_tracked")} == set(published_sd)
    assert m.conv3_1_1x1_reduce.stride == (2, 2) and m.conv3_1_3x3.stride == (1, 1)


def test_matches_functional_reference(published_sd, weights_file):
    x = faces(3)
    ref = reference_features(published_sd, x)
    scale = np.abs(ref).max()
    assert scale > 0 and np.std(ref, axis=0).max() > 1e-3 * scale
    for channels_last, batch_size, fold_bn in ((True, 2, True), (False, 3, False)):
        enc = SpatialEncoder(weights_file, channels_last=channels_last, batch_size=batch_size, fold_bn=fold_bn)
        got = enc.encode(x)
        assert got.dtype == np.float32 and got.shape == (3, 2048)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * scale)
    assert enc.fingerprint["weights"] == "sha256:" + hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert enc.fingerprint["architecture"] == "resnet50_ferplus_dag"


def test_loads_with_num_batches_tracked(published_sd, tmp_path):
    # A state dict re-saved by a recent PyTorch carries num_batches_tracked; it must load as well.
    m = ResNet50FerPlusDag()
    m.load_state_dict(published_sd, strict=False)
    path = tmp_path / "resaved.pth"
    torch.save(m.state_dict(), path)
    x = faces(1, seed=5)
    np.testing.assert_allclose(SpatialEncoder(path).encode(x), reference_features(published_sd, x), rtol=1e-4,
                               atol=1e-4 * 1e3)


def test_missing_and_unexpected_keys(published_sd, tmp_path):
    sd = dict(published_sd)
    del sd["conv4_2_3x3_bn.running_var"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(BadInputError, match=r"1 missing keys: conv4_2_3x3_bn\.running_var") as e:
        SpatialEncoder(tmp_path / "missing.pth")
    assert "missing.pth" in str(e.value)
    sd = dict(published_sd, **{"fc8.weight": torch.zeros(8, 2048), "fc8.bias": torch.zeros(8)})
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(BadInputError, match=r"2 unexpected keys: fc8\.bias, fc8\.weight"):
        SpatialEncoder(tmp_path / "extra.pth")


def test_wrong_shape_and_not_a_state_dict(published_sd, tmp_path):
    sd = dict(published_sd, **{"classifier.weight": torch.zeros(7, 2048, 1, 1)})
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(BadInputError, match=r"classifier\.weight \(7, 2048, 1, 1\) != \(8, 2048, 1, 1\)"):
        SpatialEncoder(tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match="cannot read as a PyTorch state dict"):
        SpatialEncoder(tmp_path / "junk.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(BadInputError, match="not a flat state dict"):
        SpatialEncoder(tmp_path / "list.pth")


def test_missing_file_says_what_to_do(tmp_path):
    path = tmp_path / "nowhere" / "resnet50_ferplus_dag.pth"
    with pytest.raises(BadInputError) as e:
        SpatialEncoder(path)
    msg = str(e.value)
    assert str(path) in msg and "make weights" in msg and "MIMAMO_WEIGHTS" in msg and "--weights" in msg
    assert DEFAULT_WEIGHTS in msg


def test_resolve_weights(monkeypatch):
    monkeypatch.delenv("MIMAMO_WEIGHTS", raising=False)
    assert resolve_weights(None) == DEFAULT_WEIGHTS == "weights/resnet50_ferplus_dag.pth"
    monkeypatch.setenv("MIMAMO_WEIGHTS", "/models/ferplus.pth")
    assert resolve_weights(None) == "/models/ferplus.pth"
    assert resolve_weights("") == "/models/ferplus.pth"
    assert resolve_weights("mine.pth") == "mine.pth"
    assert resolve_weights("random") == "random"


def photo_crops():
    """Astronaut's face, the same mirrored, the same brighter, and a cat: uint8 [4, 224, 224, 3]."""
    face = skimage.data.astronaut()[0:224, 140:364]
    cat = skimage.data.chelsea()[50:274, 100:324]
    brighter = np.clip(face.astype(np.int16) + 30, 0, 255).astype(np.uint8)
    return np.stack([face, face[:, ::-1], brighter, cat])


@pytest.fixture(scope="module")
def random_encoder():
    with pytest.warns(UserWarning, match="NOT the paper's FER\\+ features"):
        return SpatialEncoder("random")


def test_random_is_reproducible_and_informative(random_encoder):
    a = random_encoder
    with pytest.warns(UserWarning):
        b = SpatialEncoder("random", batch_size=3)
    x = photo_crops()
    fa, fb = a.encode(x), b.encode(x)
    np.testing.assert_allclose(fa, fb, rtol=1e-5, atol=1e-6)
    assert a.fingerprint["weights"] == "random:seed=0" and "not the paper" in a.fingerprint["note"]
    assert json.loads(json.dumps(a.fingerprint)) == a.fingerprint  # the pipeline hashes it as JSON
    assert np.isfinite(fa).all() and (fa >= 0).all()
    # Not degenerate: many dimensions vary across images, and more between a face and a cat than
    # between a face and its mirror image (the features carry appearance).
    assert (fa.std(axis=0) > 1e-3 * fa.mean()).mean() > 0.5
    d = np.linalg.norm(fa[:, None] - fa[None], axis=-1)
    assert d[0, 1] > 0 and d[0, 1] < d[0, 3] and d[0, 2] < d[0, 3]
    with pytest.warns(UserWarning):
        c = SpatialEncoder("random", seed=1)
    assert c.fingerprint["weights"] == "random:seed=1"
    assert not np.allclose(c.encode(x[:1]), fa[:1])


def test_rejects_bad_input(random_encoder):
    enc = random_encoder
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(np.zeros((1, 112, 112, 3), np.uint8))
    assert enc.encode(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 2048)
    with pytest.raises(ValueError, match="CUDA"):
        SpatialEncoder("random", amp="bf16")
