"""MIMAMO Net: spatial MLP + temporal CNN -> fusion -> BiGRU -> linear (arousal, valence) head.

Per frame t of a sequence (x_t = ResNet50 pool5 vector, P_t = N motion rows around t, orientation x time as
channels, at 48x48 and 24x24):

    s_t = MLP(x_t)                         2048 -> 256 -> 256, each FC followed by BN, ReLU, dropout
    m_t = CNN(P_t^0, P_t^1)                conv blocks (conv3x3-BN-ReLU, conv3x3/2-BN-ReLU); P^1 concatenated
                                           after block 1 (which halves 48 -> 24); global mean; FC 256, FC 256
    g_t = FC(concat(s_t, m_t))             512 -> 256 (BN, ReLU, dropout)
    f_t = BiGRU(g_1..g_L)_t                hidden 128 per direction, 2 layers (the released code): f_t is 256-d.
                                           The paper's text says "128 dimensional f_t"; we follow the code.
    y_t = W f_t + b                        linear (no tanh): the paper's "final linear output layer"; the CCC
                                           loss fixes the scale, and a tanh would saturate at label extremes.
    y_video = W mean_{t valid}(f_t) + b    video-level head (OMG): the same output layer on the averaged f_t.

--arch paper: 4 blocks / 8 conv layers (48 -> 24 -> 12 -> 6 -> 3); --arch released: 3 blocks / 6 conv layers
(48 -> 24 -> 12 -> 6), as in wtomin/MIMAMO-Net. Channels width, 2*width, 4*width(, 4*width); the released code
has width 64. Single-stream models (streams=spatial|temporal) drop the fusion and the GRU and put the linear
output on the 256-d stream feature, as the paper's single-stream nets do (gru=True keeps a GRU instead).
Submodule names (spatial, temporal, fuse, gru, head) are shared by all variants, so a two-stream model can be
initialised from single-stream checkpoints.

``present`` [B, L] marks the positions that hold a frame (a prefix of each sequence; the rest is padding: a video
shorter than L, an utterance with fewer snippets than L). Padding is kept out of the computation: the streams and
BatchNorm see present rows only and the GRU runs over each sequence's own length, so an utterance of 5 snippets is
not read through 59 padded steps. Without padding the computation is the plain batched one.
"""
from __future__ import annotations

import torch
from torch import nn


def fc(i: int, o: int, dropout: float) -> nn.Sequential:
    """Linear -> BN -> ReLU -> dropout (the paper puts BN and dropout after every FC layer)."""
    return nn.Sequential(nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU(inplace=True), nn.Dropout(dropout))


def block(i: int, o: int, stride: int) -> nn.Sequential:
    """Two 3x3 convolutions, the second strided."""
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                         nn.Conv2d(o, o, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(o),
                         nn.ReLU(inplace=True))


class TemporalCNN(nn.Module):
    """Motion windows [n, C, 48, 48] (+ [n, C, 24, 24]) -> [n, 256]."""

    def __init__(self, channels: int, second_scale: bool, arch: str = "paper", width: int = 64,
                 dropout: float = 0.3):
        super().__init__()
        if arch not in ("paper", "released"):
            raise ValueError(f"arch must be 'paper' or 'released', not {arch!r}")
        widths = [width, 2 * width, 4 * width] + ([4 * width] if arch == "paper" else [])
        extra = channels if second_scale else 0
        ins = [channels, widths[0] + extra] + widths[1:-1]
        self.blocks = nn.ModuleList(block(i, o, 2) for i, o in zip(ins, widths))
        self.drop = nn.Dropout2d(0.2)
        self.fc = nn.Sequential(fc(widths[-1], 256, dropout), fc(256, 256, dropout))

    def forward(self, x0: torch.Tensor, x1: torch.Tensor | None = None) -> torch.Tensor:
        h = self.blocks[0](x0)
        if x1 is not None:
            h = torch.cat([h, x1], 1)
        for b in self.blocks[1:]:
            h = self.drop(b(h))
        return self.fc(h.mean((2, 3)))


class MimamoNet(nn.Module):
    """Two-stream (or single-stream) MIMAMO Net over sequences [B, L, ...]; see the module docstring."""

    def __init__(self, streams: str = "both", window: int = 12, second_scale: bool = True, arch: str = "paper",
                 width: int = 64, gru: bool | None = None, gru_layers: int = 2, dropout: float = 0.5):
        super().__init__()
        if streams not in ("both", "spatial", "temporal"):
            raise ValueError(f"streams must be both, spatial or temporal, not {streams!r}")
        self.streams = streams
        self.use_gru = (streams == "both") if gru is None else gru
        if streams in ("both", "spatial"):
            self.spatial = nn.Sequential(fc(2048, 256, dropout), fc(256, 256, dropout))
        if streams in ("both", "temporal"):
            self.temporal = TemporalCNN(2 * window, second_scale, arch, width)
        if streams == "both":
            self.fuse = fc(512, 256, dropout)
        if self.use_gru:
            self.gru = nn.GRU(256, 128, num_layers=gru_layers, bidirectional=True, batch_first=True,
                              dropout=0.3 if gru_layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(256, 2))

    def features(self, rgb: torch.Tensor | None, m0: torch.Tensor | None, m1: torch.Tensor | None,
                 present: torch.Tensor | None = None) -> torch.Tensor:
        """f_t for every frame: [B, L, 256] (zeros at absent positions when ``present`` marks padding)."""
        b, l = (rgb if rgb is not None else m0).shape[:2]
        keep = None if present is None or bool(present.all()) else present.reshape(-1)

        def rows(x: torch.Tensor) -> torch.Tensor:
            x = x.flatten(0, 1)
            return x if keep is None else x[keep]

        parts = []
        if hasattr(self, "spatial"):
            parts.append(self.spatial(rows(rgb)))
        if hasattr(self, "temporal"):
            parts.append(self.temporal(rows(m0), None if m1 is None else rows(m1)))
        g = self.fuse(torch.cat(parts, 1)) if len(parts) == 2 else parts[0]
        if keep is not None:
            g = g.new_zeros(b * l, g.shape[1]).index_put((keep.nonzero()[:, 0],), g)
        g = g.reshape(b, l, -1)
        if not self.use_gru:
            return g
        if keep is None:
            return self.gru(g)[0]
        lengths = present.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(g, lengths, batch_first=True, enforce_sorted=False)
        return nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=l)[0]

    def forward(self, rgb, m0, m1=None, mask: torch.Tensor | None = None,
                present: torch.Tensor | None = None) -> dict:
        """Per-frame (arousal, valence) [B, L, 2]; with a frame mask also the video-level output [B, 2]."""
        f = self.features(rgb, m0, m1, present)
        out = {"frame": self.head(f)}
        if mask is not None:
            w = mask.to(f.dtype).unsqueeze(-1)
            fbar = (f * w).sum(1) / w.sum(1).clamp(min=1)
            out["video"] = self.head(fbar)
        return out
