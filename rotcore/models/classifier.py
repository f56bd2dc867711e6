"""Digit classifiers that share one layer plan: a plain CNN and group-equivariant CNNs (escnn).

The plan follows the E(2)-CNN paper's MNIST model (Weiler & Cesa 2019, "E2SFCNN"): six convolutions
(kernels 9, 7, 7, 7, 7, 5; 2×2 max pooling after the 2nd and 4th), batch norm and ELU, then three
fully connected layers with dropout. On a 28×28 input the grid goes 28 → 20 → 10 → 5 → 1, with no
strided convolution on an even grid, so a C_N/D_N model with 4 | N is *exactly* invariant to 90° turns
(escnn's filters are exact on the pixel grid for those); other angles are approximate.

Channel counts are given as C16 regular-field multiplicities and rescaled by ``1/sqrt(|G| / 16)`` for
other groups (the paper's ``fixparams`` rule), which keeps parameter counts similar across groups; the
plain CNN is the trivial group (``|G| = 1``), i.e. 4× the C16 multiplicities as plain channels.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from rotcore.config import ConfigError, check_positive
from rotcore.models.escnn_tools import r2conv, reset_parameters

GROUP_RE = re.compile(r"^(C|D)(\d+)$")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """One classifier. ``group``: ``"C1"`` is a plain CNN (torch layers); ``"C8"``, ``"C16"``, ``"D16"`` ...
    are escnn G-CNNs with regular fields. ``restrict_at=k`` restricts a D_N model to C_N after conv k
    (the paper's ``D16|5C16``). ``width`` scales every channel count (small profiles)."""

    group: str = "C16"
    restrict_at: int | None = None
    channels: tuple[int, ...] = (24, 32, 36, 36, 64, 96)
    kernels: tuple[int, ...] = (9, 7, 7, 7, 7, 5)
    paddings: tuple[int, ...] = (0, 3, 3, 3, 3, 0)
    pool_after: tuple[int, ...] = (2, 4)
    fc: tuple[int, ...] = (96, 96)
    dropout: float = 0.3
    frequencies_cutoff_pi: float = 0.8
    width: float = 1.0
    in_channels: int = 1
    num_classes: int = 10

    def __post_init__(self):
        m = GROUP_RE.match(self.group)
        if not m or int(m.group(2)) < 1:
            raise ConfigError(f"group={self.group!r}; use C1 (plain CNN), C<N> or D<N>, e.g. C8, C16, D16")
        if not (len(self.channels) == len(self.kernels) == len(self.paddings)):
            raise ConfigError("channels, kernels and paddings need one entry per convolution")
        if self.restrict_at is not None:
            if not self.group.startswith("D"):
                raise ConfigError("restrict_at applies to dihedral groups (D<N>) only")
            if not 1 <= self.restrict_at <= len(self.channels):
                raise ConfigError(f"restrict_at must be in 1..{len(self.channels)}")
        check_positive("width", self.width)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def flips(self) -> bool:
        return self.group.startswith("D")

    @property
    def rotations(self) -> int:
        return int(GROUP_RE.match(self.group).group(2))

    @property
    def order(self) -> int:
        return self.rotations * (2 if self.flips else 1)

    @property
    def is_equivariant(self) -> bool:
        return self.order > 1

    def multiplicity(self, layer: int) -> int:
        """Fields (or plain channels for C1) of conv ``layer`` (0-based), after the fixparams rule."""
        return max(1, int(self.channels[layer] * self.width / math.sqrt(self.order / 16)))


def _head(in_features: int, cfg: ClassifierConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    for f in cfg.fc:
        layers += [nn.Dropout(cfg.dropout), nn.Linear(in_features, f), nn.BatchNorm1d(f), nn.ELU(inplace=True)]
        in_features = f
    layers += [nn.Dropout(cfg.dropout), nn.Linear(in_features, cfg.num_classes)]
    return nn.Sequential(*layers)


class PlainCNN(nn.Module):
    """The layer plan with ordinary convolutions (no built-in symmetry)."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for i, (k, p) in enumerate(zip(cfg.kernels, cfg.paddings)):
            c_out = cfg.multiplicity(i)
            layers += [nn.Conv2d(c_in, c_out, k, padding=p), nn.BatchNorm2d(c_out)]
            if i + 1 in cfg.pool_after:
                layers.append(nn.MaxPool2d(2))
            layers.append(nn.ELU(inplace=True))
            c_in = c_out
        layers.append(nn.AdaptiveMaxPool2d(1))
        self.features = nn.Sequential(*layers)
        self.head = _head(c_in, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class GCNN(nn.Module):
    """The layer plan with escnn steerable convolutions over regular fields of C_N or D_N, made invariant
    by group pooling before the fully connected head. Input: plain ``(B, C, H, W)`` tensors.

    Every field of the last convolution is a regular field of the (possibly restricted) group, which is
    what :meth:`invariant_features` relies on."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        from escnn import gspaces
        from escnn import nn as enn

        self.config = cfg
        n = cfg.rotations
        gspace = gspaces.flipRot2dOnR2(n) if cfg.flips else gspaces.rot2dOnR2(n)
        self.in_type = enn.FieldType(gspace, cfg.in_channels * [gspace.trivial_repr])
        layers: list[enn.EquivariantModule] = []
        t = self.in_type
        last = len(cfg.kernels) - 1
        for i, (k, p) in enumerate(zip(cfg.kernels, cfg.paddings)):
            out = enn.FieldType(t.gspace, cfg.multiplicity(i) * [t.gspace.regular_repr])
            layers.append(r2conv(t, out, k, padding=p, frequencies_cutoff=cfg.frequencies_cutoff_pi * math.pi))
            if cfg.restrict_at == i + 1:
                layers.append(enn.RestrictionModule(layers[-1].out_type, (None, n)))
                layers.append(enn.DisentangleModule(layers[-1].out_type))
            layers.append(enn.InnerBatchNorm(layers[-1].out_type))
            if i == last:
                break  # group pooling, ELU and the spatial max follow in forward()
            if i + 1 in cfg.pool_after:
                layers.append(enn.PointwiseMaxPool2D(layers[-1].out_type, 2))
            layers.append(enn.ELU(layers[-1].out_type, inplace=True))
            t = layers[-1].out_type
        self.features = enn.SequentialModule(*layers)
        self.out_type = layers[-1].out_type
        self.group_size = self.out_type.representations[0].size
        self.head = _head(len(self.out_type), cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled_features(x))

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """The group-pooled (invariant) features of plain images ``x`` ``(B, C, H, W)``: what the head reads,
        ``(B, fields)`` (the escnn features, then :meth:`invariant_features`)."""
        from escnn import nn as enn

        return self.invariant_features(self.features(enn.GeometricTensor(x, self.in_type)).tensor)

    def invariant_features(self, z: torch.Tensor) -> torch.Tensor:
        """Group pooling (max over each regular field's |G| channels), ELU, then a spatial max:
        ``(B, fields * |G|, H, W) -> (B, fields)``. Same values as escnn's ``GroupPooling`` for regular
        fields, but keeps the input's dtype (escnn's allocates float32, which breaks float64 checks)."""
        b, c, h, w = z.shape
        z = z.view(b, c // self.group_size, self.group_size, h, w).amax(2)
        return F.elu(z).amax(dim=(-2, -1))


@functools.lru_cache(maxsize=16)
def _template(cfg: ClassifierConfig) -> nn.Module:
    # Built on a fork of the torch RNG: building draws weights (and escnn's basis solver draws more), and
    # whether the template is already cached must not change what a seed gives the caller. (It did: the
    # first build of a config in a process drew its weights from another point of the stream than every
    # later one, so a model trained alone differed from the same model trained after another one.)
    # .train(): a new escnn R2Conv carries an expanded `filter` buffer that disappears on the first
    # train() call; normalising here keeps state_dict keys the same before and after training.
    with torch.random.fork_rng(devices=[]):
        return (GCNN(cfg) if cfg.is_equivariant else PlainCNN(cfg)).train()


def build_classifier(cfg: ClassifierConfig) -> nn.Module:
    """A freshly initialised classifier (weights drawn from the current torch RNG: seed before calling;
    the same seed gives the same weights whatever was built before in the process).

    escnn networks are built once per config and process, then copied and re-initialised.
    """
    return reset_parameters(copy.deepcopy(_template(cfg)))
