"""Settings of the ΔPhase/phase maths (MotionConfig), each variant's defaults, and MOTION_V1 (the defaults before
issue 17). Re-exported by features.motion, where the maths is."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .window import FACE_EDGE, FACE_ELLIPSE, face_window

MOTION_VERSION = "1"  # bump whenever the maths of delta_phase/phase/optical_flow changes (cache fingerprints)
VARIANTS = ("mimamo", "paper")  # the order of ΔPhase's steps: see MotionConfig
RIGID = ("affine", "mean", "none")
AMPLITUDES = ("product", "geometric", "current")
# What a setting left unset (None; "default" for window, whose None means no window) becomes, per variant.
# mimamo's: measured with bench/leakage.py (issue 17); the paper's: the paper's and its released code's.
VARIANT_DEFAULTS = {
    "mimamo": {"sigma": 3.0, "amplitude": "product", "rigid": "affine", "window": FACE_ELLIPSE},
    "paper": {"sigma": 2.0, "amplitude": "current", "rigid": "mean", "window": None},
}
# The mimamo defaults before issue 17: MotionConfig(**MOTION_V1) gives, bit for bit, the ΔPhase and phase that
# MotionConfig() gave then (`features --motion-variant v1`, or --motion-v1 as a base for other flags).
MOTION_V1 = {"sigma": 2.0, "taps": 11, "amplitude": "geometric", "rigid": "mean", "window": None}


def default_taps(sigma: float) -> int:
    """The blur's support for a sigma: 2 int(2.5 sigma) + 1 taps (the released code's 11 at sigma 2; 15 at 3)."""
    return 2 * int(2.5 * sigma) + 1


@dataclass(frozen=True)
class MotionConfig:
    r"""Settings of the ΔPhase/phase maths; ``variant`` picks the order of ΔPhase's steps, and the defaults of the
    settings left unset (``VARIANT_DEFAULTS``): the paper variant's are the paper's, mimamo's remove the head's
    motion and what slides past the face (issue 17, bench/leakage.py). Unset settings are filled in at
    construction, so ``as_dict()`` (the cache fingerprint) always holds the values used.

    Per scale and orientation, frame t has the complex band :math:`c_t = A_t e^{i\varphi_t}`,
    :math:`\varphi_t \in (-\pi, \pi]` (see ``face_bands``). :math:`G` is the ``taps`` x ``taps`` Gaussian of std
    ``sigma``, zero-padded at the map borders (``taps`` defaults to 2 int(2.5 sigma) + 1), :math:`*` a 2-D
    convolution, :math:`m` the face window (1 where there is none) and :math:`C` clamps to :math:`\pm` ``clamp``.

    - ``"mimamo"`` (default): the wrapped phase step, the head's affine motion taken out of it, then its
      amplitude-weighted blur (Wadhwa et al. 2013) inside the face window,

      .. math:: \delta_t = \arg(c_t \bar c_{t-1}) - R_t \in (-\pi, \pi], \qquad
                D_t = m \cdot G*(m w_t \delta_t) / G*(m w_t), \qquad \Delta_t = C(M(D_t)),

      with :math:`w_t = A_t A_{t-1}` (``amplitude="product"``, default: a phase step's noise variance under
      additive noise n is ~ n²(1/A_t² + 1/A_{t-1}²)/2, so this is its inverse-variance weight up to the ratio of
      the amplitudes), :math:`\sqrt{A_t A_{t-1}}` (``"geometric"``, the default before) or :math:`A_t`
      (``"current"``). It needs frames t-1 and t only, is right for motion in either direction, and never blurs
      across a spatial 2π wrap of the phase.
      :math:`R_t` (``rigid="affine"``, default) is the robust affine motion field of ``features.rigid``:
      phase constancy makes a motion d(p) change the phase by :math:`-\omega(p) \cdot d(p)` (:math:`\omega` the
      band's local frequency), and for d(p) = t + A p that is linear in six parameters, fitted per frame pair and
      band by IRLS with Tukey weights (``rigid_iterations`` steps) and weights :math:`m w_t`, so local
      micro-motions are outliers that do not pull it; rotation, scale, shear and translation go, local motions
      stay. With ``rigid="mean"`` (the paper's remedy) :math:`R_t = 0` and :math:`M` subtracts the blurred map's
      mean (over a k x k box with ``mean_window``, which implies ``rigid="mean"``); ``"none"``: neither.
      ``window`` (cx, cy, ax, ay): a soft ellipse over the face in fractions of the crop (``features.window``,
      ``window_edge`` its taper): the blur is a normalised convolution inside it and its output is tapered by
      it, so the background and hair sliding past an aligned face as the head moves leave nothing; None: the
      whole crop.
    - ``"paper"`` (the paper and its released code, with the unwrap fixed): unwrap each pixel's phase over
      time, blur each frame's unwrapped phase, then difference,

      .. math:: \Phi_t = \varphi_t + 2\pi k_t, \qquad \Psi_t = G*(A_t \Phi_t) / G*A_t, \qquad
                D_t = \Psi_t - \Psi_{t-1}, \qquad \Delta_t = C(M(D_t)),

      with integer turns :math:`k_t` per pixel: :math:`k_r = 0` at the video's first valid frame r and at the
      first valid frame after each gap of invalid frames, and :math:`k_t = k_{t-1} - \mathrm{round}((\varphi_t
      - \varphi_{t-1}) / 2\pi)`, so that :math:`|\Phi_t - \Phi_{t-1}| \le \pi` (``numpy.unwrap``, right in both
      directions; the released ``torch.fmod`` unwrap left steps below -π, i.e. increasing phase, wrapped).
      :math:`D_t` depends on where the unwrap started (the weights :math:`A_t`, :math:`A_{t-1}` differ, so the
      offsets :math:`2\pi k` do not cancel), hence the restart rule; the released code restarted at every
      13-frame window, so its values depended on the window. Its defaults are the released code's: sigma 2
      over 11 taps, the whole-map mean (``rigid="mean"``), no window; its weight is :math:`A_t`
      (``amplitude="current"``, the only one). The affine fit and the face window are refused: the fit works on
      a frame pair's wrapped phase step before the blur, a step this order does not have, and both would make
      it something other than the paper's maths (``rigid="none"`` and ``mean_window`` are allowed).

    How far the variants are apart (old defaults, ``test_paper_variant_differs_from_mimamo_and_drifts_with_the_
    unwrap``): within 13 frames of the unwrap's start the paper variant differs from mimamo by ~0.35-0.5 of
    mimamo's RMS (correlation ~0.9-0.95), and the gap grows with the distance from the start (~0.75-1.2 beyond
    100 frames, correlation ~0.45-0.8; its own RMS grows 1.5-2.4x by frames 600-1000): the turns random-walk
    where the amplitude is low, and their offsets leak into :math:`D_t` as :math:`A_t` changes. It also depends
    on the phase origin: mirroring a face turns its band into :math:`-\bar c`, whose phase π - φ wraps at other
    pixels, so unlike mimamo with ``MOTION_V1`` it does not mirror exactly (mimamo's default does not either:
    its affine fit samples every other pixel).

    ``phase()`` uses ``sigma`` and ``taps`` only.
    """

    sigma: float | None = None  # Gaussian of the amplitude-weighted blur, pixels (mimamo 3, paper 2)
    taps: int | None = None  # blur support (taps x taps), zero-padded at the borders (2 int(2.5 sigma) + 1)
    mean_window: int | None = None  # rigid="mean": None the whole map (released code); odd k: k x k box at scale 0
    clamp: float = 5 * math.pi  # ΔPhase is clamped to ±clamp after the rigid motion's removal
    amplitude: str | None = None  # mimamo's blur weight: "product" A_t A_t-1, "geometric" its sqrt, "current" A_t
    variant: str = "mimamo"  # "mimamo": difference, then blur; "paper": unwrap, blur, then difference
    rigid: str | None = None  # head-motion removal: "affine" (features.rigid), "mean" (+ mean_window), "none"
    rigid_iterations: int = 2  # rigid="affine": IRLS steps of the robust fit (after its start)
    window: tuple | str | None = "default"  # (cx, cy, ax, ay) soft face ellipse (features.window), or None
    window_edge: float = FACE_EDGE  # the window falls from 1 to 0 over this outer fraction of its radius

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        d = VARIANT_DEFAULTS[self.variant]

        def fill(name, value):
            object.__setattr__(self, name, value)

        # numbers as float/int, so that a setting read back from JSON gives the same fingerprint
        fill("sigma", float(d["sigma"] if self.sigma is None else self.sigma))
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        fill("taps", default_taps(self.sigma) if self.taps is None else int(self.taps))
        fill("amplitude", d["amplitude"] if self.amplitude is None else self.amplitude)
        fill("rigid", ("mean" if self.mean_window is not None else d["rigid"]) if self.rigid is None else self.rigid)
        if isinstance(self.window, str) and self.window == "default":
            fill("window", d["window"])
        fill("clamp", float(self.clamp))
        fill("window_edge", float(self.window_edge))
        if self.taps < 1 or self.taps % 2 == 0:
            raise ValueError(f"taps must be odd and positive, got {self.taps}")
        if self.mean_window is not None and (self.mean_window < 1 or self.mean_window % 2 == 0):
            raise ValueError(f"mean_window must be None or odd and positive, got {self.mean_window}")
        if self.rigid not in RIGID:
            raise ValueError(f"rigid must be one of {', '.join(RIGID)}, got {self.rigid!r}")
        if self.mean_window is not None and self.rigid != "mean":
            raise ValueError(f"mean_window is the box of rigid='mean', not of rigid={self.rigid!r}")
        if self.rigid_iterations < 0:
            raise ValueError(f"rigid_iterations must be >= 0, got {self.rigid_iterations}")
        if self.amplitude not in AMPLITUDES:
            raise ValueError(f"amplitude must be one of {', '.join(AMPLITUDES)}, got {self.amplitude!r}")
        if self.window is not None:
            if isinstance(self.window, str) or len(self.window) != 4:
                raise ValueError(f"window must be (cx, cy, ax, ay), None or 'default', got {self.window!r}")
            w = tuple(float(v) for v in self.window)
            face_window(8, 8, w, self.window_edge)  # checks the axes and the edge
            fill("window", w)  # a list from JSON becomes the tuple the default is
        if self.variant == "paper":
            if self.amplitude != "current":
                raise ValueError("the paper variant weights its blur by A_t (amplitude='current'); "
                                 f"amplitude={self.amplitude!r} is mimamo's")
            if self.rigid == "affine":
                raise ValueError("rigid='affine' is mimamo's: the fit works on a frame pair's wrapped phase step "
                                 "before the blur, which the paper's order (unwrap, blur, difference) does not have; "
                                 "the paper variant takes rigid='mean' (its own) or 'none'")
            if self.window is not None:
                raise ValueError("the face window is mimamo's; the paper variant is the paper's maths over the whole "
                                 "crop (window=None)")

    def as_dict(self) -> dict:
        """Every setting (the variant's defaults filled in) plus the code version, for cache fingerprints."""
        return {**asdict(self), "version": MOTION_VERSION}

    def with_variant(self, variant: str | None) -> MotionConfig:
        """These settings under another variant: those left at this variant's defaults take the other's."""
        if variant is None or variant == self.variant:
            return self
        base = MotionConfig(variant=self.variant)
        given = {f.name: getattr(self, f.name) for f in fields(self)
                 if f.name != "variant" and getattr(self, f.name) != getattr(base, f.name)}
        if given.get("taps") == default_taps(self.sigma):  # taps that follow sigma follow it there too
            given.pop("taps")
        if given.get("rigid") == "mean" and self.mean_window is not None:  # implied by the box
            given.pop("rigid")
        return MotionConfig(**given, variant=variant)
