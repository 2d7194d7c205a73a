"""Complex steerable pyramid (Portilla & Simoncelli) in the Fourier domain, batched, in torch."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn

_LUT_SIZE = 1024  # angular lookup table resolution, as pyrtools
_RCOS_SIZE = 256  # radial raised-cosine table resolution, as pyrtools


def _point_op(x: np.ndarray, lut: np.ndarray, origin: float, increment: float) -> np.ndarray:
    """Linear interpolation in an equispaced table, extrapolating linearly past its ends.

    This is pyrtools' C ``pointOp`` to the bit; the masks are built through it (and not from the
    closed forms) so that the bands equal pyrtools' to rounding.
    """
    pos = (x - origin) / increment
    index = np.clip(np.trunc(pos).astype(np.int64), 0, lut.size - 2)
    return lut[index] + (lut[index + 1] - lut[index]) * (pos - index)


def _rcos_fn(width: float, position: float) -> tuple[np.ndarray, np.ndarray]:
    """Raised cosine from 0 to 1 over ``width`` centred on ``position`` (pyrtools' ``rcosFn``)."""
    x = np.pi * np.arange(-_RCOS_SIZE - 1, 2) / (2 * _RCOS_SIZE)
    y = np.cos(x) ** 2
    y[0] = y[1]
    y[_RCOS_SIZE + 2] = y[_RCOS_SIZE + 1]
    x = position + (2 * width / np.pi) * (x + np.pi / 4)
    return x, y


def _crop_bounds(dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end, in the centred spectrum, of the half-size crop that downsamples by 2."""
    ctr = np.ceil((dims + 0.5) / 2).astype(int)
    lodims = np.ceil((dims - 0.5) / 2).astype(int)
    loctr = np.ceil((lodims + 0.5) / 2).astype(int)
    start = ctr - loctr
    return start, start + lodims


@functools.lru_cache(maxsize=32)
def _build_filters(height: int, width: int, scales: int, orientations: int, twidth: int = 1):
    """Per scale: (row indices, column indices, masks [orientations, h_s, w_s] complex128).

    The indices pick, from an unshifted ``fft2`` of the full image, the frequencies that survive the
    repeated half-size crops, already in unshifted (``ifft2``-ready) order; the masks hold the product
    of every radial and angular mask applied up to that band, times (-i)^order, also unshifted.
    """
    order = orientations - 1
    dims = np.array([height, width])
    ctr = np.ceil((dims + 0.5) / 2).astype(int)
    xramp, yramp = np.meshgrid(np.linspace(-1, 1, width + 1)[:-1], np.linspace(-1, 1, height + 1)[:-1])
    angle = np.arctan2(yramp, xramp)
    log_rad = np.sqrt(xramp ** 2 + yramp ** 2)
    log_rad[ctr[0] - 1, ctr[1] - 1] = log_rad[ctr[0] - 1, ctr[1] - 2]
    log_rad = np.log2(log_rad)

    xrcos, yrcos = _rcos_fn(twidth, -twidth / 2.0)
    yrcos = np.sqrt(yrcos)
    yircos = np.sqrt(1.0 - yrcos ** 2)
    lowpass = _point_op(log_rad, yircos, xrcos[0], xrcos[1] - xrcos[0])  # lo0 mask

    xcosn = np.pi * np.arange(-(2 * _LUT_SIZE + 1), _LUT_SIZE + 2) / _LUT_SIZE
    const = (2 ** (2 * order)) * (math.factorial(order) ** 2) / (orientations * math.factorial(2 * order))
    alfa = ((np.pi + xcosn) % (2.0 * np.pi)) - np.pi
    # is_complex: keep one half-plane per orientation, doubled, so each band is analytic
    ycosn = 2.0 * np.sqrt(const) * (np.cos(xcosn) ** order) * (np.abs(alfa) < np.pi / 2.0)

    rows, cols = np.fft.fftshift(np.arange(height)), np.fft.fftshift(np.arange(width))
    out = []
    for _ in range(scales):
        xrcos = xrcos - 1.0
        himask = _point_op(log_rad, yrcos, xrcos[0], xrcos[1] - xrcos[0])
        masks = np.stack([
            _point_op(angle, ycosn, xcosn[0] + np.pi * b / orientations, xcosn[1] - xcosn[0])
            for b in range(orientations)
        ])
        band = (-1j) ** order * lowpass * himask * masks
        out.append((np.fft.ifftshift(rows), np.fft.ifftshift(cols),
                    np.fft.ifftshift(band, axes=(-2, -1))))
        start, end = _crop_bounds(np.array(log_rad.shape))
        crop = (slice(start[0], end[0]), slice(start[1], end[1]))
        log_rad, angle, lowpass = log_rad[crop], angle[crop], lowpass[crop]
        rows, cols = rows[crop[0]], cols[crop[1]]
        lowpass = lowpass * _point_op(log_rad, yircos, xrcos[0], xrcos[1] - xrcos[0])
    return out


class ComplexSteerablePyramid(nn.Module):
    r"""Complex steerable pyramid (Portilla & Simoncelli 2000) of a batch of images, band-pass bands only.

    With :math:`\hat x = \mathrm{FFT}(x)` on the normalised frequency grid :math:`(\omega_x, \omega_y)
    \in [-1, 1)^2` (1 = Nyquist), :math:`r = |\omega|`, :math:`\theta = \mathrm{atan2}(\omega_y, \omega_x)`:

    - radial masks are raised cosines in :math:`\log_2 r`, one octave wide (``twidth`` = 1):
      :math:`H(r) = \cos(\tfrac{\pi}{2}\log_2 r)` on :math:`r \in [\tfrac12, 1]`, 0 below, 1 above, and
      :math:`L = \sqrt{1 - H^2}`; first :math:`L_0 = L(r)`, then scale ``s`` takes the high-pass
      :math:`H(2^{s+1} r)` as its band and passes :math:`L(2^{s+1} r)` on to the next scale;
    - angular masks, ``K = orientations`` (order ``K-1``), for band ``b``:
      :math:`A_b(\theta) = 2 c_K \cos^{K-1}(\theta - \pi b/K)` on the half-plane
      :math:`|\theta - \pi b/K| < \pi/2` and 0 elsewhere, so the band is analytic (complex) and its
      real part is the usual real steerable band; :math:`c_K = 2^{2(K-1)}((K-1)!)^2 / (K(2K-2)!)`;
    - band :math:`(s, b) = \mathrm{IFFT}_{h_s \times w_s}\big((-i)^{K-1} \hat x\, L(r) \prod_{j<s} L(2^{j+1} r)\,
      H(2^{s+1} r)\, A_b(\theta)\big)`, where scale ``s`` uses only the centre :math:`H/2^s \times W/2^s`
      block of the spectrum (the crop is the factor-2 downsampling).

    Orientation 0 responds to horizontal frequencies (:math:`\omega_x > 0`: vertical stripes, so
    horizontal motion), orientation 1 to vertical ones. A translation by :math:`d` multiplies a band by
    about :math:`e^{-i\omega\cdot d}`. The high- and low-pass residuals are not computed.

    The masks are tabulated exactly as pyrtools' ``SteerablePyramidFreq(..., is_complex=True)`` (same
    lookup tables and interpolation), so bands equal its ``pyr_coeffs[(s, b)]`` to rounding. They are
    built once per (size, scales, orientations) and moved once per (device, dtype).
    """

    def __init__(self, size: tuple[int, int], scales: int = 2, orientations: int = 2):
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.scales, self.orientations = int(scales), int(orientations)
        if self.orientations < 2:
            raise ValueError("a complex steerable pyramid needs at least 2 orientations (order >= 1)")
        max_scales = int(np.floor(np.log2(min(self.size)))) - 2
        if not 1 <= self.scales <= max_scales:
            raise ValueError(f"scales must be in 1..{max_scales} for size {self.size}")
        self._host = _build_filters(*self.size, self.scales, self.orientations)
        self._moved: dict[tuple[str, torch.dtype], list] = {}

    def filters(self, device: torch.device | str, dtype: torch.dtype) -> list:
        """Per scale: (row index, column index, complex masks) on ``device``; cached."""
        key = (str(torch.device(device)), dtype)
        if key not in self._moved:
            cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
            self._moved[key] = [
                (torch.as_tensor(r, device=device), torch.as_tensor(c, device=device),
                 torch.as_tensor(m, dtype=cdtype, device=device))
                for r, c, m in self._host
            ]
        return self._moved[key]

    def forward(self, images: torch.Tensor, out_size: tuple[int, int] | None = None) -> list[torch.Tensor]:
        """Bands of ``images`` [B, H, W]: one complex tensor [B, orientations, h_s, w_s] per scale.

        ``out_size=(h, w)`` returns only the top-left ``h/2^s x w/2^s`` block of each band (what a
        mirror-extended face needs), skipping the inverse transform of the rest.
        """
        if images.ndim != 3 or tuple(images.shape[-2:]) != self.size:
            raise ValueError(f"expected images [B, {self.size[0]}, {self.size[1]}], got {tuple(images.shape)}")
        if images.dtype not in (torch.float32, torch.float64):
            images = images.to(torch.float32)
        spectrum = torch.fft.fft2(images)
        bands = []
        for s, (rows, cols, masks) in enumerate(self.filters(images.device, images.dtype)):
            sub = spectrum.index_select(-2, rows).index_select(-1, cols)
            prod = sub.unsqueeze(1) * masks
            if out_size is None:
                bands.append(torch.fft.ifft2(prod))
            else:
                h, w = out_size[0] >> s, out_size[1] >> s
                bands.append(_partial_ifft2(prod, h, w))
        return bands


def _partial_ifft2(spec: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Top-left h x w block of ifft2(spec): transform columns, keep h rows, then transform rows."""
    full = torch.fft.ifft(spec, dim=-2)[..., :h, :]
    return torch.fft.ifft(full, dim=-1)[..., :w]
