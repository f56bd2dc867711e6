"""Angle regressors: predict the rotation angle of an image over the full circle.

The seed's head predicts the unit vector ``(cos θ, sin θ)`` (trained with MSE, decoded with ``atan2``);
``AngleCNN`` is a small CNN with that head for 28×28 digits (the MNIST angle judge).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from rotcore.config import ConfigError, check_positive
from rotcore.rotate import angle_to_vec, vec_to_angle

HEADS = ("vec",)


@dataclasses.dataclass(frozen=True)
class AngleCNNConfig:
    """A VGG-style CNN for small grey images: ``channels`` per block (two 3×3 convs, BN, ReLU, 2×2 pool)."""

    channels: tuple[int, ...] = (32, 64, 128)
    hidden: int = 256
    dropout: float = 0.25
    head: str = "vec"
    in_channels: int = 1
    width: float = 1.0

    def __post_init__(self):
        if self.head not in HEADS:
            raise ConfigError(f"head={self.head!r}; choose one of {HEADS}")
        if not self.channels:
            raise ConfigError("channels must name at least one block")
        check_positive("width", self.width)


class AngleCNN(nn.Module):
    def __init__(self, cfg: AngleCNNConfig):
        super().__init__()
        self.config = cfg
        layers, c_in = [], cfg.in_channels
        for c in cfg.channels:
            c = max(4, int(c * cfg.width))
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten())
        hidden = max(8, int(cfg.hidden * cfg.width))
        self.head = nn.Sequential(nn.Linear(4 * c_in, hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
                                  nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw head output ``(B, 2)``: an unnormalised ``(cos, sin)`` vector."""
        return self.head(self.features(x))

    @staticmethod
    def loss(out: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
        """The seed's loss: MSE between the output and the unit vector of the true angle."""
        return F.mse_loss(out.float(), angle_to_vec(angle_deg.float()))

    @staticmethod
    def decode_deg(out: torch.Tensor) -> torch.Tensor:
        """Predicted angle in ``[0, 360)`` (``atan2`` of the output vector)."""
        return vec_to_angle(out.float())
