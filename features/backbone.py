"""Frozen FER+ ResNet50 (VGGFace2, then FER+; S. Albanie's MatConvNet "dag" conversion): 2048-d pool5 features."""
from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from features.errors import BadInputError

DEFAULT_WEIGHTS = "weights/resnet50_ferplus_dag.pth"
WEIGHTS_ENV = "MIMAMO_WEIGHTS"
ARCH = "resnet50_ferplus_dag"
# The published model's meta: RGB order, 0-255 scale, std 1.
MEAN_RGB = (131.0912, 103.8827, 91.4953)
INPUT_SIZE = 224
FEATURE_DIM = 2048
# (stage, units, bottleneck width, output width, stride of the first unit)
STAGES = ((2, 3, 64, 256, 1), (3, 4, 128, 512, 2), (4, 6, 256, 1024, 2), (5, 3, 512, 2048, 2))
WEIGHTS_HINT = (
    f"put resnet50_ferplus_dag.pth at {DEFAULT_WEIGHTS} (`make weights` downloads it where the network allows), "
    f"or point --weights PATH or the {WEIGHTS_ENV} environment variable at it; --weights random runs the demo "
    "without it"
)


def resolve_weights(arg: str | None) -> str:
    """The weights to use: the explicit argument, else $MIMAMO_WEIGHTS, else weights/resnet50_ferplus_dag.pth."""
    if arg:
        return str(arg)
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    return env or DEFAULT_WEIGHTS


class ResNet50FerPlusDag(nn.Module):
    """ResNet50 in the layout of the published `resnet50_ferplus_dag.pth` (Caffe-style bottlenecks).

    With x the RGB image (0-255) minus the mean, BN(z) = gamma (z - mu) / sqrt(var + 1e-5) + beta, and
    f = relu(BN(conv(.))), a unit of width w computes
        y = relu(BN_inc(conv1x1_inc(f_3x3(f_reduce(x)))) + s(x)),
    where s is the identity, or BN_proj(conv1x1_proj(x)) on each stage's first unit. Stages 3-5 downsample
    with stride 2 on the first unit's 1x1 reduce and 1x1 proj (not on the 3x3, unlike torchvision).
    Stem: relu(BN(conv7x7/2, pad 3)), then a 3x3/2 max pool, padding 0, ceil mode (112 -> 56).
    `forward` returns pool5_7x7_s1, the 7x7 average of the last unit's output: [B, 2048], non-negative
    because the last ReLU precedes the pool (a ReLU after it would be the identity, so none is applied).
    Modules are flat attributes named as in the published file, so `state_dict()` keys equal its keys;
    `classifier` (1x1 conv 2048 -> 8 FER+ classes) is kept for that reason but not used by `forward`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1_7x7_s2 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.conv1_7x7_s2_bn = nn.BatchNorm2d(64, eps=1e-5)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        self.units: list[tuple[str, int, bool]] = []  # (prefix, stride, has projection)
        c_in = 64
        for stage, n_units, width, c_out, stride in STAGES:
            for i in range(1, n_units + 1):
                p = f"conv{stage}_{i}"
                first = i == 1
                s = stride if first else 1
                self._conv_bn(f"{p}_1x1_reduce", c_in, width, 1, s)
                self._conv_bn(f"{p}_3x3", width, width, 3, 1)
                self._conv_bn(f"{p}_1x1_increase", width, c_out, 1, 1)
                if first:
                    self._conv_bn(f"{p}_1x1_proj", c_in, c_out, 1, s)
                self.units.append((p, s, first))
                c_in = c_out
        self.pool5_7x7_s1 = nn.AvgPool2d(7, stride=1, padding=0)
        self.classifier = nn.Conv2d(2048, 8, 1, bias=True)

    def _conv_bn(self, name: str, c_in: int, c_out: int, k: int, stride: int) -> None:
        setattr(self, name, nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False))
        setattr(self, f"{name}_bn", nn.BatchNorm2d(c_out, eps=1e-5))

    def _cbr(self, name: str, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        y = getattr(self, f"{name}_bn")(getattr(self, name)(x))
        return F.relu(y, inplace=True) if relu else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 224, 224] mean-subtracted RGB -> pool5 features [B, 2048]."""
        x = self.pool1_3x3_s2(self._cbr("conv1_7x7_s2", x))
        for p, _, proj in self.units:
            y = self._cbr(f"{p}_1x1_reduce", x)
            y = self._cbr(f"{p}_3x3", y)
            y = self._cbr(f"{p}_1x1_increase", y, relu=False)
            short = self._cbr(f"{p}_1x1_proj", x, relu=False) if proj else x
            x = F.relu(y.add_(short), inplace=True)
        return torch.flatten(self.pool5_7x7_s1(x), 1)


def backbone_parameter_count(model: nn.Module) -> int:
    """Parameters of the feature extractor, without the FER+ classifier."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier."))


def _expected_keys(model: nn.Module) -> set[str]:
    # The published file predates `num_batches_tracked` (PyTorch 0.4.1); it is unused in eval mode, so it
    # is neither required nor refused.
    return {k for k in model.state_dict() if not k.endswith(".num_batches_tracked")}


def _listing(keys: set[str], n: int = 5) -> str:
    ks = sorted(keys)
    more = f", ... ({len(ks) - n} more)" if len(ks) > n else ""
    return ", ".join(ks[:n]) + more


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_published(model: ResNet50FerPlusDag, path: str | Path) -> None:
    """Load the published state dict strictly: the key set and every shape must match, else BadInputError."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "ResNet50 FER+ weights file not found", WEIGHTS_HINT)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure means a bad file
        raise BadInputError(path, f"cannot read as a PyTorch state dict ({type(e).__name__}: {e})",
                            "expected the plain state dict of resnet50_ferplus_dag.pth saved with torch.save") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise BadInputError(path, f"holds a {type(sd).__name__}, not a flat state dict of tensors",
                            "expected the plain state dict of resnet50_ferplus_dag.pth")
    sd = {k: v for k, v in sd.items() if not k.endswith(".num_batches_tracked")}
    expected = _expected_keys(model)
    missing, unexpected = expected - sd.keys(), sd.keys() - expected
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
        raise BadInputError(path, "not the resnet50_ferplus_dag layout; " + "; ".join(parts),
                            "this loader takes the published FER+ ResNet50 only (torchvision-layout weights "
                            "are a different network)")
    own = model.state_dict()
    bad = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items() if v.shape != own[k].shape}
    if bad:
        shown = ", ".join(f"{k} {got} != {want}" for k, (got, want) in sorted(bad.items())[:5])
        raise BadInputError(path, f"{len(bad)} tensors have the wrong shape: {shown}",
                            "expected the published resnet50_ferplus_dag.pth")
    model.load_state_dict(sd, strict=False)


def _calibration_images(n: int, gen: torch.Generator) -> torch.Tensor:
    """Seeded smooth colour images (coarse blobs plus fine noise), 0-255 RGB, [n, 3, 224, 224]."""
    coarse = torch.rand(n, 3, 7, 7, generator=gen) * 255.0
    img = F.interpolate(coarse, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", align_corners=False)
    img = img + 20.0 * torch.randn(n, 3, INPUT_SIZE, INPUT_SIZE, generator=gen)
    return img.clamp_(0.0, 255.0)


@torch.no_grad()
def random_init(model: ResNet50FerPlusDag, seed: int = 0, calibration_images: int = 4) -> None:
    """Seeded Kaiming-normal convolutions, then BN running stats set to the batch statistics of seeded images.

    Without the calibration, the unnormalised 0-255 input and the residual sums drift the activations' scale
    through 16 units; with it every BN output has unit variance on image-like inputs, so the random features
    stay well scaled and still vary with the image (random convolutional features carry appearance).
    """
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
            m.momentum = None  # cumulative average: after one batch, running stats = that batch's statistics
    x = _calibration_images(calibration_images, gen) - torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    model.train()
    model(x)
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
            m.num_batches_tracked.zero_()


@torch.no_grad()
def fold_batchnorm(model: ResNet50FerPlusDag) -> ResNet50FerPlusDag:
    """Fold each eval-mode BN into its convolution, in place: W' = W s, b' = beta - mu s, s = gamma / sqrt(var + eps).

    The same function up to float rounding (~1e-6 relative), one memory pass fewer per layer (~10% on CPU);
    the folded model no longer has the published keys, so fold after loading.
    """
    for name, conv in list(model.named_children()):
        bn = getattr(model, f"{name}_bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(s.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bn.bias - bn.running_mean * s, requires_grad=False)
            setattr(model, f"{name}_bn", nn.Identity())
    return model


@contextlib.contextmanager
def ieee_fp32_convolutions():
    """cuDNN convolutions in IEEE float32 while inside: torch's default lets them use TF32 (10-bit mantissa), which put
    CUDA features ~1e-3 away from the CPU's; the cache treats a device change as float rounding only."""
    cudnn = torch.backends.cudnn
    new_api = hasattr(cudnn, "conv") and hasattr(cudnn.conv, "fp32_precision")   # torch >= 2.9
    before = cudnn.conv.fp32_precision if new_api else cudnn.allow_tf32
    if new_api:
        cudnn.conv.fp32_precision = "ieee"
    else:
        cudnn.allow_tf32 = False
    try:
        yield
    finally:
        if new_api:
            cudnn.conv.fp32_precision = before
        else:
            cudnn.allow_tf32 = before


_AMP = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


class SpatialEncoder:
    """Frozen FER+ ResNet50: uint8 RGB face crops [B, 224, 224, 3] -> float32 pool5 features [B, 2048].

    weights: a path to resnet50_ferplus_dag.pth, or "random" (seeded, for the demo and tests; warns).
    batch_size bounds memory: default 32 on CPU (measured: the process peaks at ~0.7 GB, ~10 MB per image on
    top of ~0.36 GB for torch and the model), 64 on CUDA, where `features` runs one encoder per worker process on a
    shared GPU (measured on an H100, bench/gpu.py: a worker held 6.3 GiB at batch 256, so 16 workers ran out of its
    80 GB, and 2.4 GiB at 64; batch 64 gave 15% fewer images/s in fp32 than 256, 8% in bf16). A batch that runs out
    of GPU memory is retried at half the size, and that size is kept (a warning says so).
    amp: None, "bf16" or "fp16": autocast on CUDA (the features change slightly; it is in the fingerprint). Without it
    CUDA convolutions run in IEEE float32, not TF32 (see ``ieee_fp32_convolutions``).
    channels_last: NHWC activations; on CPU it was faster in bench/spatial.py, and uint8 NHWC crops map onto
    it without a copy. fold_bn: fold BatchNorm into the convolutions (same features up to float rounding).
    """

    def __init__(self, weights: str | Path = "random", device: str | torch.device = "cpu",
                 batch_size: int | None = None, amp: str | None = None, channels_last: bool = True,
                 fold_bn: bool = True, seed: int = 0):
        self.device = torch.device(device)
        if amp is not None and (amp not in _AMP or self.device.type != "cuda"):
            raise ValueError(f"amp={amp!r}: autocast is offered on CUDA only, as one of {sorted(_AMP)}")
        self.amp = None if amp is None else _AMP[amp]
        self.batch_size = int(batch_size or (64 if self.device.type == "cuda" else 32))
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.channels_last = channels_last
        model = ResNet50FerPlusDag()
        if str(weights) == "random":
            warnings.warn(f"SpatialEncoder(weights='random'): seeded random ResNet50 (seed={seed}); these are NOT "
                          "the paper's FER+ features (demo and tests only)", UserWarning, stacklevel=2)
            random_init(model, seed)
            weights_id = f"random:seed={seed}"
        else:
            load_published(model, weights)
            weights_id = f"sha256:{sha256_file(weights)}"
        model.eval().requires_grad_(False)
        if fold_bn:
            fold_batchnorm(model)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.net = model.to(self.device)
        self._mean = torch.tensor(MEAN_RGB, device=self.device)
        self.fingerprint = {
            "architecture": ARCH,
            "weights": weights_id,
            "preprocessing": f"RGB uint8 {INPUT_SIZE}x{INPUT_SIZE}, 0-255 minus mean {list(MEAN_RGB)}, std 1",
            "output": "pool5_7x7_s1 (after the last ReLU), 2048-d float32",
            "amp": None if amp is None else str(self.amp).removeprefix("torch."),
        }
        if weights_id.startswith("random"):
            self.fingerprint["note"] = "random weights: not the paper's features"

    def preprocess(self, faces: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 224, 224, 3] on any device -> float32 [B, 3, 224, 224] minus the mean, on self.device."""
        # In place in NHWC (one allocation, the mean broadcast along the contiguous axis; fastest of the
        # variants timed); the permuted result is a channels_last tensor with no copy.
        x = faces.to(self.device).to(torch.float32, copy=True).sub_(self._mean).permute(0, 3, 1, 2)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def encode(self, faces: np.ndarray) -> np.ndarray:
        """uint8 RGB faces [B, 224, 224, 3] -> float32 features [B, 2048], in batches of batch_size."""
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"faces must be uint8 [B, {INPUT_SIZE}, {INPUT_SIZE}, 3] RGB, "
                             f"got {faces.dtype} {list(faces.shape)}")
        out = np.empty((len(faces), FEATURE_DIM), np.float32)
        src = torch.from_numpy(np.ascontiguousarray(faces))
        i = 0
        while i < len(faces):
            n = min(self.batch_size, len(faces) - i)
            if self._fits(src[i:i + n], out[i:i + n]):
                i += n
                continue
            self.batch_size = max(1, n // 2)   # kept: the other processes on this GPU still hold their memory
            torch.cuda.empty_cache()           # the failed batch's tensors are gone with its exception
            warnings.warn(f"SpatialEncoder: out of GPU memory at batch {n}; batch {self.batch_size} from now on (other "
                          "processes on this GPU, e.g. `features` workers, hold the rest)", UserWarning, stacklevel=2)
        return out

    def _fits(self, faces: torch.Tensor, out: np.ndarray) -> bool:
        """Encode one batch into ``out``; False when the GPU ran out of memory (a batch of one raises)."""
        try:
            out[:] = self._forward(faces)
            return True
        except torch.cuda.OutOfMemoryError:
            if len(faces) == 1:
                raise
            return False

    def _forward(self, faces: torch.Tensor) -> np.ndarray:
        """One batch of uint8 faces -> float32 features, as numpy."""
        exact = self.amp is None and self.device.type == "cuda"
        with torch.inference_mode(), ieee_fp32_convolutions() if exact else contextlib.nullcontext():
            x = self.preprocess(faces)
            if self.amp is not None:
                with torch.autocast(device_type="cuda", dtype=self.amp):
                    return self.net(x).float().cpu().numpy()
            return self.net(x).float().cpu().numpy()
