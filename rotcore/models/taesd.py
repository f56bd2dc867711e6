"""A Tiny AutoEncoder (the TAESD family), FLUX.2 variant "TAEF2", written from its state dicts' layout.

Both halves are plain ``nn.Sequential`` stacks of 3×3 convolutions and residual blocks with 64 channels, so
the pretrained weights load by index. The encoder takes images in [0, 1] and downsamples 8× with three
stride-2 convolutions to ``latent_channels`` (32 for TAEF2); the decoder soft-clamps the latent
(``3·tanh(z/3)``), upsamples 8× (nearest neighbour, then a convolution) and returns images in about [0, 1].
TAEF2 adds, before each of the three lowest-resolution blocks of both halves, a residual branch
1×1 conv → GroupNorm(4) → ReLU → 1×1 conv (``x + pool(x)``).

The latent is deterministic (no posterior, no KL). :class:`TinyAutoencoder` exposes ``encode``/``decode`` on
[0, 1] images. Weights: :func:`load_taef2` reads ``taef2_encoder.pth`` / ``taef2_decoder.pth`` from a folder
(``$ROTBOOK_DATA/taesd`` offline; the files come from the public repository madebyollin/taesd, MIT).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from rotcore.config import check_positive
from rotcore.paths import MissingDataError, data_root

TAEF2_FILES = ("taef2_encoder.pth", "taef2_decoder.pth")


@dataclasses.dataclass(frozen=True)
class TinyAEConfig:
    """``width`` channels everywhere; ``latent_channels`` (TAEF2: 32); ``pool_blocks``: add the residual
    1×1 branch to the lowest-resolution blocks (TAEF2: True)."""

    width: int = 64
    latent_channels: int = 32
    pool_blocks: bool = True

    def __post_init__(self):
        check_positive("width", self.width)
        check_positive("latent_channels", self.latent_channels)

    @property
    def downsampling(self) -> int:
        return 8


def _conv(c_in: int, c_out: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class Block(nn.Module):
    """``relu(conv3(relu(conv2(relu(conv1(x))))) + x)``, optionally after ``x = x + pool(x)``."""

    def __init__(self, c: int, *, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(c, c), nn.ReLU(), _conv(c, c), nn.ReLU(), _conv(c, c))
        self.pool = (nn.Sequential(nn.Conv2d(c, 4 * c, 1, bias=False), nn.GroupNorm(4, 4 * c), nn.ReLU(),
                                   nn.Conv2d(4 * c, c, 1, bias=False)) if pool else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


class SoftClamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def build_encoder(cfg: TinyAEConfig) -> nn.Sequential:
    w, p = cfg.width, cfg.pool_blocks
    return nn.Sequential(
        _conv(3, w), Block(w),
        _conv(w, w, stride=2, bias=False), Block(w), Block(w), Block(w),
        _conv(w, w, stride=2, bias=False), Block(w), Block(w), Block(w),
        _conv(w, w, stride=2, bias=False), Block(w, pool=p), Block(w, pool=p), Block(w, pool=p),
        _conv(w, cfg.latent_channels),
    )


def build_decoder(cfg: TinyAEConfig) -> nn.Sequential:
    w, p = cfg.width, cfg.pool_blocks

    def up():
        return [nn.Upsample(scale_factor=2), _conv(w, w, bias=False)]

    return nn.Sequential(
        SoftClamp(), _conv(cfg.latent_channels, w), nn.ReLU(), Block(w, pool=p), Block(w, pool=p), Block(w, pool=p),
        *up(), Block(w), Block(w), Block(w),
        *up(), Block(w), Block(w), Block(w),
        *up(), Block(w),
        _conv(w, 3),
    )


class TinyAutoencoder(nn.Module):
    """Encoder + decoder on images in [0, 1]; ``forward`` reconstructs."""

    def __init__(self, cfg: TinyAEConfig = TinyAEConfig()):
        super().__init__()
        self.config = cfg
        self.encoder = build_encoder(cfg)
        self.decoder = build_decoder(cfg)

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        return self.encoder(x01)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x01))


def taef2_folder() -> Path:
    return data_root() / "taesd"


def load_taef2(folder: str | Path | None = None) -> TinyAutoencoder:
    """TAEF2 with its pretrained weights from ``folder`` (default ``$ROTBOOK_DATA/taesd``).

    Raises :class:`rotcore.paths.MissingDataError` naming the folder and the files when they are absent;
    ``load_state_dict`` is strict, so weights of another layout fail loudly.
    """
    folder = Path(folder) if folder is not None else taef2_folder()
    missing = [f for f in TAEF2_FILES if not (folder / f).is_file()]
    if missing:
        raise MissingDataError(
            f"TAEF2 weights not found: {', '.join(missing)} missing in {folder}. Put taef2_encoder.pth and "
            "taef2_decoder.pth there (from the public repository madebyollin/taesd, MIT licence), set "
            "ROTBOOK_DATA to a data folder holding taesd/, or use base='pretrain'.")
    model = TinyAutoencoder(TinyAEConfig())
    for part, name in zip((model.encoder, model.decoder), TAEF2_FILES):
        part.load_state_dict(torch.load(folder / name, map_location="cpu", weights_only=True))
    return model
