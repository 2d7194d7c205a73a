"""Complex steerable pyramid (Portilla & Simoncelli) in the Fourier domain, batched, in torch."""
from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from .scratch import Scratch, take

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


def _ext_dft(freqs: np.ndarray, n: int) -> np.ndarray:
    """DFT (length 2n) at ``freqs`` of the mirror extension [x, x reversed] of a length-n signal: [len, n]."""
    k = freqs[:, None].astype(np.float64)
    i = np.arange(n)[None, :]
    return np.exp(-2j * np.pi * k * i / (2 * n)) + np.exp(-2j * np.pi * k * (2 * n - 1 - i) / (2 * n))


def _band_plan(mask, f_in, f_out, n_in, n_out, o_in, o_out):
    """Matrices that take a face laid out [outer, inner, B] to one band's top-left block [re/im, outer, inner, B].

    ``mask`` [len f_in, len f_out] is the band's frequency mask on its (cropped) grid, whose support is a
    half-plane in the outer axis: only those outer frequencies are visited. With the extension's DFT
    along the outer axis equal to exp(i pi l / 2n) 2 cos(pi l (2c+1) / 2n), the transform is
    (1) a real cosine transform along the outer axis (shared by the scales: see ``_cosine``), (2) per outer frequency, a complex [o_in x n_in]
    matrix that does the inner DFT, the mask and the inner inverse DFT, (3) the outer inverse DFT.
    """
    support = np.flatnonzero(np.abs(mask).max(axis=0) > 0)
    l = f_out[support].astype(np.float64)
    inv_in = np.exp(2j * np.pi * np.arange(o_in)[:, None] * np.arange(len(f_in))[None, :] / len(f_in)) / len(f_in)
    inner = np.einsum("pj,ji,jn->ipn", inv_in, mask[:, support], _ext_dft(f_in, n_in))
    inner *= np.exp(1j * np.pi * l / (2 * n_out))[:, None, None]
    outer = np.exp(2j * np.pi * np.arange(o_out)[:, None] * support[None, :] / len(f_out)) / len(f_out)
    # complex products as real ones: rows (re, im) x position, columns (support, re/im)
    block = np.zeros((2, o_out, len(support), 2))
    block[0, :, :, 0], block[0, :, :, 1] = outer.real, -outer.imag
    block[1, :, :, 0], block[1, :, :, 1] = outer.imag, outer.real
    return (l.astype(np.int64), np.concatenate([inner.real, inner.imag], axis=1),
            block.reshape(2 * o_out, 2 * len(support)))


def _cosine(freqs: np.ndarray, n: int) -> np.ndarray:
    """Real part of the mirror extension's DFT once its phase exp(i pi l / 2n) is taken out: [len, n]."""
    return 2 * np.cos(np.pi * freqs[:, None] * (2 * np.arange(n)[None, :] + 1) / (2 * n))


class MirroredFacePyramid:
    """Bands of faces [B, h, w] mirror-extended to [[x, x_w], [x_h, x_hw]] (2h x 2w), cropped back to the face.

    Same numbers as ``ComplexSteerablePyramid((2h, 2w))`` on the extended image, top-left block, but as
    three dense matrix products per band with the batch as the last (contiguous) axis: the extension
    makes the forward DFT a real cosine transform of the face, each analytic band's spectrum is a
    half-plane, and only the face block of the inverse is computed. Small fixed sizes make this several
    times faster than FFTs on CPU. Band (s, b) comes out as [re/im, outer, inner, B] with outer = x for
    orientation 0 and y for orientation 1 (the axis its half-plane restricts).
    """

    def __init__(self, size: tuple[int, int], scales: int = 2, orientations: int = 2):
        h, w = int(size[0]), int(size[1])
        self.size, self.scales, self.orientations = (h, w), scales, orientations
        plans, freqs = [], {b: np.zeros(0, np.int64) for b in range(orientations)}
        for s, (rows, cols, masks) in enumerate(_build_filters(2 * h, 2 * w, scales, orientations)):
            for b in range(orientations):
                if b == 0:  # horizontal-frequency band: its half-plane restricts columns (x outer)
                    plan = _band_plan(masks[b], rows, cols, h, w, h >> s, w >> s)
                else:  # with 2 orientations the other band's half-plane restricts rows (y outer)
                    plan = _band_plan(masks[b].T, cols, rows, w, h, w >> s, h >> s)
                plans.append((s, b, plan))
                freqs[b] = np.union1d(freqs[b], plan[0])
        # one cosine transform per orientation serves every scale: a scale picks its frequencies from it
        self._host = [(s, b, (np.searchsorted(freqs[b], f), inner, block)) for s, b, (f, inner, block) in plans]
        self._cos_host = {b: _cosine(freqs[b], w if b == 0 else h) for b in range(orientations)}
        self._moved: dict[tuple[str, torch.dtype], tuple] = {}

    def _plans(self, device, dtype):
        key = (str(torch.device(device)), dtype)
        if key not in self._moved:
            cos = {b: torch.as_tensor(m, dtype=dtype, device=device) for b, m in self._cos_host.items()}
            plans = []
            for s, b, (pos, inner, block) in self._host:
                # a contiguous run of the shared frequencies is a view, not a gather
                pick = (slice(int(pos[0]), int(pos[-1]) + 1) if np.array_equal(pos, np.arange(pos[0], pos[-1] + 1))
                        else torch.as_tensor(pos, device=device))
                plans.append((s, b, pick, torch.as_tensor(inner, dtype=dtype, device=device),
                              torch.as_tensor(block, dtype=dtype, device=device)))
            self._moved[key] = (cos, plans)
        return self._moved[key]

    def native(self, faces: torch.Tensor, scratch: Scratch | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(scale, orientation, band [2, outer, inner, B] real) for faces laid out [h, w, B], float32/float64.

        Batch last, as every product here wants it (a caller building batches can write them so directly).
        A generator: a caller that is done with a band before asking for the next holds one band at a time.
        With ``scratch`` every product is written into its buffers (names "pyr.*"), so no temporary is
        allocated per batch, and a band is valid only until the next one is asked for.
        """
        if self.orientations != 2:
            raise ValueError("the mirrored fast path handles 2 orientations")
        h, w = self.size
        n = faces.shape[-1]
        cos, plans = self._plans(faces.device, faces.dtype)
        across = take(scratch, "pyr.layout", (w, h, n), faces).copy_(faces.transpose(0, 1))
        layouts = {0: across.view(w, h * n), 1: faces.reshape(h, w * n)}
        spectra = {}
        for b, m in cos.items():
            spectrum = take(scratch, f"pyr.spectrum{b}", (m.shape[0], layouts[b].shape[1]), faces)
            spectra[b] = torch.mm(m, layouts[b], out=spectrum).view(m.shape[0], -1, n)
        for s, b, pick, inner, block in plans:
            picked = spectra[b][pick]  # [support, inner size, B]
            r = torch.matmul(inner, picked, out=take(scratch, "pyr.r", (inner.shape[0], inner.shape[1], n), faces))
            o_in = r.shape[1] // 2
            band = torch.mm(block, r.view(-1, o_in * n), out=take(scratch, "pyr.band", (block.shape[0], o_in * n), faces))
            del r  # without scratch: freed before the caller works on the band, for its next allocation
            yield s, b, band.view(2, block.shape[0] // 2, o_in, n)

    def __call__(self, faces: torch.Tensor) -> list[torch.Tensor]:
        """Complex bands [B, orientations, h_s, w_s] per scale, like ``ComplexSteerablePyramid``'s."""
        per_scale: list[list] = [[None] * self.orientations for _ in range(self.scales)]
        for s, b, band in self.native(faces.permute(1, 2, 0)):
            c = torch.complex(band[0], band[1])  # [outer, inner, B]
            per_scale[s][b] = c.permute(2, 1, 0) if b == 0 else c.permute(2, 0, 1)
        return [torch.stack(bands, dim=1) for bands in per_scale]
