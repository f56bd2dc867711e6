"""Stable-Diffusion-style VAEs for study 02: diffusers' ``AutoencoderKL``, and a variant that is exactly
equivariant to the dihedral group D4 (quarter turns and flips) by construction.

``SDVAEConfig`` describes an ``AutoencoderKL`` with SD's block plan (``DownEncoderBlock2D`` /
``UpDecoderBlock2D``, GroupNorm + SiLU ResNet blocks, one attention layer in the middle, a diagonal-Gaussian
latent with 4 channels, 8× downsampling for 4 levels). Only the widths shrink; the model is a stock
diffusers model, so ``save_pretrained`` / ``AutoencoderKL.from_pretrained`` and the pipelines work with it.

Why SD's VAE cannot be exactly rot90/rot180-equivariant: its encoder downsamples with
``F.pad(x, (0, 1, 0, 1))`` (right and bottom only) before a stride-2 3×3 convolution, so on an even grid the
sampled pixel centres sit at even positions, which a 180° turn maps to odd ones; and its kernels are free.
(The decoder's nearest-neighbour upsampling and zero-padded 3×3 convolutions are symmetric; only its kernels
break the symmetry.)

``EquivariantAutoencoderKL`` keeps SD's plan and changes exactly those two things:

* **symmetric downsampling**: 2×2 average pooling (the ``use_conv=False`` path of diffusers' own
  ``Downsample2D``), followed by a 3×3 convolution; on an even grid 2×2 blocks map to 2×2 blocks under D4;
* **weight sharing over the group** (Cohen & Welling's regular group convolutions): every hidden feature map
  is a *regular field*, ``|G|`` channels that the group permutes; a kernel is stored once and used in all its
  ``|G|`` transformed copies (:class:`GroupConv2d`). Inputs (RGB), latents and outputs are *trivial fields*
  (plain channels), so the group acts on a latent by moving its pixels only:
  ``encode(g·x) = g·encode(x)`` and ``decode(g·z) = g·decode(z)`` with ``g·`` = :func:`rotcore.rotate.apply_d4`.
  GroupNorm groups hold whole fields and its affine parameters are shared within a field; attention uses
  1×1 group convolutions for q, k, v (the softmax over positions is permutation-equivariant already).

Exact means: equal up to floating-point rounding (the transformed kernels are exact permutations of the
stored ones). It holds for images whose side is a multiple of ``2**(levels - 1)``. The variant has the same
activation widths as a plain model with ``fields × |G|`` channels but ``|G|`` times fewer free weights per
convolution; it is not loadable by ``AutoencoderKL.from_pretrained`` (it is a different architecture), but it
saves and loads with diffusers' ``ModelMixin`` machinery (``EquivariantAutoencoderKL.from_pretrained``).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from rotcore.config import ConfigError, check_choice, check_positive
from rotcore.rotate import D4, apply_d4, d4_subgroup_table

Tensor = torch.Tensor

GROUPS = {"C4": ("e", "r90", "r180", "r270"), "D4": D4}
DOWNSAMPLES = ("avgpool", "asymmetric")


# ---------------------------------------------------------------------------------------------------------
# The stock SD-style VAE


@dataclasses.dataclass(frozen=True)
class SDVAEConfig:
    """An ``AutoencoderKL`` with Stable Diffusion's block plan; the defaults are SD 1.x's VAE (83.7 M params).

    ``len(block_out_channels) - 1`` downsamplings (4 levels: 8×). ``norm_num_groups`` must divide every width.
    """

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    mid_block_add_attention: bool = True
    sample_size: int = 512

    def __post_init__(self):
        if not self.block_out_channels:
            raise ConfigError("block_out_channels must name at least one level")
        for c in self.block_out_channels:
            check_positive("block_out_channels", c)
            if c % self.norm_num_groups:
                raise ConfigError(f"norm_num_groups={self.norm_num_groups} must divide every width, not {c}")
        check_positive("layers_per_block", self.layers_per_block)
        check_positive("latent_channels", self.latent_channels)
        check_positive("sample_size", self.sample_size)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def diffusers_kwargs(self) -> dict:
        """The ``AutoencoderKL(**kwargs)`` arguments (what ends up in diffusers' ``config.json``)."""
        n = len(self.block_out_channels)
        return {"in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * n,
                "up_block_types": ("UpDecoderBlock2D",) * n, "block_out_channels": tuple(self.block_out_channels),
                "layers_per_block": self.layers_per_block, "latent_channels": self.latent_channels,
                "norm_num_groups": self.norm_num_groups, "sample_size": self.sample_size,
                "mid_block_add_attention": self.mid_block_add_attention}


def build_autoencoder_kl(cfg: SDVAEConfig) -> AutoencoderKL:
    """A freshly initialised diffusers ``AutoencoderKL`` (seed the global RNG first for reproducible weights)."""
    return AutoencoderKL(**cfg.diffusers_kwargs())


# ---------------------------------------------------------------------------------------------------------
# Group-equivariant building blocks (regular fields of a subgroup of D4)


class GroupConv2d(nn.Module):
    """A convolution between trivial or regular fields of ``group`` (a subgroup of D4, as element names).

    Channel layout: a regular field of ``C`` channels occupies ``C·|G|`` channels, field-major
    (``c·|G| + h``); a trivial field occupies ``C``. Under ``g``, a regular field transforms as
    ``(g·f)[c, h] = apply_d4(f[c, g⁻¹h], g)``, a trivial one as ``apply_d4(f, g)``.

    The stored weight is ``(C_out, C_in, n_in, k, k)``; the full kernel for output element ``h`` is the stored
    one with its group axis permuted by ``h⁻¹`` and its spatial axes transformed by ``h``
    (``out[h] = Σ_{h'} x[h'] ⋆ h·W[h⁻¹h']``). A trivial output averages the regular one over ``h`` (a linear,
    invariant projection). Padding is symmetric zero padding; ``stride`` 1 only (downsample with pooling).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, group: tuple[str, ...],
                 in_regular: bool, out_regular: bool, padding: int = 0, bias: bool = True):
        super().__init__()
        self.group, self.in_regular, self.out_regular = tuple(group), in_regular, out_regular
        self.n = len(self.group)
        self.n_in = self.n if in_regular else 1
        self.in_channels, self.out_channels, self.padding = in_channels, out_channels, padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, self.n_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.register_buffer("table", torch.tensor(d4_subgroup_table(self.group)), persistent=False)
        # the expansion only moves entries: precompute it once as a gather index (one op per forward)
        probe = torch.arange(self.weight.numel(), dtype=torch.float64).reshape(self.weight.shape)
        self.register_buffer("gather_index", self._expand(probe, mean=False).round().long(), persistent=False)
        fan_in = in_channels * self.n_in * kernel_size**2
        bound = 1.0 / math.sqrt(fan_in)  # torch's default Conv2d init, for the expanded fan-in
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def _expand(self, w: Tensor, *, mean: bool) -> Tensor:
        """Reference construction: ``(C_out, n, C_in, n_in, k, k)`` copies (averaged over ``n`` if ``mean``)."""
        copies = []
        for h, name in enumerate(self.group):
            wh = w[:, :, self.table[h]] if self.in_regular else w
            copies.append(apply_d4(wh, name))
        full = torch.stack(copies, dim=1)
        return full.mean(dim=1, keepdim=True) if mean else full

    def expanded_weight(self, *, reference: bool = False) -> Tensor:
        """The ``(C_out·n_out, C_in·n_in, k, k)`` kernel of the equivalent plain convolution.

        By default one gather with a precomputed index; ``reference=True`` builds it with ``apply_d4`` (the
        two agree exactly; a test checks it)."""
        if reference:
            full = self._expand(self.weight, mean=not self.out_regular)
        else:
            full = self.weight.reshape(-1)[self.gather_index]
            if not self.out_regular:
                full = full.mean(dim=1, keepdim=True)
        co, no, ci, ni, k, _ = full.shape
        return full.reshape(co * no, ci * ni, k, k)

    def expanded_bias(self) -> Tensor | None:
        if self.bias is None:
            return None
        return self.bias.repeat_interleave(self.n) if self.out_regular else self.bias

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.expanded_weight(), self.expanded_bias(), padding=self.padding)


class FieldGroupNorm(nn.Module):
    """GroupNorm whose groups hold whole fields and whose affine parameters are shared within a field."""

    def __init__(self, num_groups: int, fields: int, field_size: int, eps: float = 1e-6):
        super().__init__()
        if fields % num_groups:
            raise ConfigError(f"norm groups ({num_groups}) must divide the number of fields ({fields})")
        self.num_groups, self.field_size, self.eps = num_groups, field_size, eps
        self.weight = nn.Parameter(torch.ones(fields))
        self.bias = nn.Parameter(torch.zeros(fields))

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight.repeat_interleave(self.field_size),
                            self.bias.repeat_interleave(self.field_size), self.eps)


class _Parts:
    """Factory for the equivariant layers of one model (the group and the norm settings)."""

    def __init__(self, group: tuple[str, ...], norm_groups: int):
        self.group, self.n, self.norm_groups = group, len(group), norm_groups

    def conv(self, cin, cout, k, *, in_regular=True, out_regular=True):
        return GroupConv2d(cin, cout, k, group=self.group, in_regular=in_regular, out_regular=out_regular,
                           padding=k // 2)

    def norm(self, fields):
        return FieldGroupNorm(self.norm_groups, fields, self.n)


class EqResnetBlock(nn.Module):
    """diffusers' ``ResnetBlock2D`` (norm, SiLU, conv, norm, SiLU, conv, skip) on regular fields."""

    def __init__(self, parts: _Parts, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = parts.norm(cin), parts.conv(cin, cout, 3)
        self.norm2, self.conv2 = parts.norm(cout), parts.conv(cout, cout, 3)
        self.shortcut = parts.conv(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.shortcut(x) if self.shortcut is not None else x) + h


class EqAttention(nn.Module):
    """diffusers' VAE attention (one head over all channels, residual) with 1×1 group convs for q, k, v, out."""

    def __init__(self, parts: _Parts, fields: int):
        super().__init__()
        self.norm = parts.norm(fields)
        self.q, self.k, self.v, self.out = (parts.conv(fields, fields, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).flatten(2).transpose(1, 2) for m in (self.q, self.k, self.v))  # (B, HW, C)
        a = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        return x + self.out(a.transpose(1, 2).reshape(b, c, h, w))


class EqDownsample(nn.Module):
    """``avgpool``: 2×2 average pooling, then a 3×3 group conv (symmetric: exact).
    ``asymmetric``: SD's ``pad(0, 1, 0, 1)`` then a stride-2 3×3 group conv (kept to measure what it breaks)."""

    def __init__(self, parts: _Parts, fields: int, mode: str):
        super().__init__()
        check_choice("downsample", mode, DOWNSAMPLES)
        self.mode = mode
        self.conv = GroupConv2d(fields, fields, 3, group=parts.group, in_regular=True, out_regular=True,
                                padding=1 if mode == "avgpool" else 0)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "avgpool":
            return self.conv(F.avg_pool2d(x, 2))
        x = F.pad(x, (0, 1, 0, 1))
        return F.conv2d(x, self.conv.expanded_weight(), self.conv.expanded_bias(), stride=2)


class EqUpsample(nn.Module):
    """Nearest-neighbour 2× upsampling, then a 3×3 group conv (diffusers' ``Upsample2D``)."""

    def __init__(self, parts: _Parts, fields: int):
        super().__init__()
        self.conv = parts.conv(fields, fields, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _MidBlock(nn.Module):
    def __init__(self, parts: _Parts, fields: int, attention: bool):
        super().__init__()
        self.res1 = EqResnetBlock(parts, fields, fields)
        self.attn = EqAttention(parts, fields) if attention else None
        self.res2 = EqResnetBlock(parts, fields, fields)

    def forward(self, x: Tensor) -> Tensor:
        x = self.res1(x)
        if self.attn is not None:
            x = self.attn(x)
        return self.res2(x)


class EqEncoder(nn.Module):
    def __init__(self, parts: _Parts, *, in_channels: int, fields: tuple[int, ...], layers_per_block: int,
                 latent_channels: int, attention: bool, downsample: str):
        super().__init__()
        self.conv_in = parts.conv(in_channels, fields[0], 3, in_regular=False)
        blocks, cin = [], fields[0]
        for i, cout in enumerate(fields):
            layers = [EqResnetBlock(parts, cin if j == 0 else cout, cout) for j in range(layers_per_block)]
            if i < len(fields) - 1:
                layers.append(EqDownsample(parts, cout, downsample))
            blocks.append(nn.Sequential(*layers))
            cin = cout
        self.down = nn.ModuleList(blocks)
        self.mid = _MidBlock(parts, fields[-1], attention)
        self.norm_out = parts.norm(fields[-1])
        self.conv_out = parts.conv(fields[-1], 2 * latent_channels, 3, out_regular=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for block in self.down:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(self.mid(x))))


class EqDecoder(nn.Module):
    def __init__(self, parts: _Parts, *, out_channels: int, fields: tuple[int, ...], layers_per_block: int,
                 latent_channels: int, attention: bool):
        super().__init__()
        rev = tuple(reversed(fields))
        self.conv_in = parts.conv(latent_channels, rev[0], 3, in_regular=False)
        self.mid = _MidBlock(parts, rev[0], attention)
        blocks, cin = [], rev[0]
        for i, cout in enumerate(rev):
            layers = [EqResnetBlock(parts, cin if j == 0 else cout, cout) for j in range(layers_per_block + 1)]
            if i < len(rev) - 1:
                layers.append(EqUpsample(parts, cout))
            blocks.append(nn.Sequential(*layers))
            cin = cout
        self.up = nn.ModuleList(blocks)
        self.norm_out = parts.norm(rev[-1])
        self.conv_out = parts.conv(rev[-1], out_channels, 3, out_regular=False)

    def forward(self, z: Tensor) -> Tensor:
        x = self.mid(self.conv_in(z))
        for block in self.up:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class EquivariantAutoencoderKL(ModelMixin, ConfigMixin):
    """SD's VAE plan with symmetric downsampling and D4 (or C4) weight sharing; see the module docstring.

    Same interface as diffusers' ``AutoencoderKL`` where the study uses it: ``encode(x).latent_dist``
    (a ``DiagonalGaussianDistribution``), ``decode(z).sample`` and ``forward``. Images in ``[-1, 1]``,
    ``(B, 3, H, W)`` with ``H = W`` a multiple of ``2**(len(block_fields) - 1)``; latents
    ``(B, latent_channels, H/8, W/8)`` for 4 levels. Build it from :class:`EquivariantVAEConfig`.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, *, in_channels: int = 3, out_channels: int = 3, block_fields: tuple[int, ...] = (8, 16, 32, 32),
                 layers_per_block: int = 2, latent_channels: int = 4, norm_num_groups: int = 8, group: str = "D4",
                 downsample: str = "avgpool", mid_block_add_attention: bool = True):
        super().__init__()
        parts = _Parts(GROUPS[group], norm_num_groups)
        fields = tuple(block_fields)
        self.encoder = EqEncoder(parts, in_channels=in_channels, fields=fields, layers_per_block=layers_per_block,
                                 latent_channels=latent_channels, attention=mid_block_add_attention,
                                 downsample=downsample)
        self.decoder = EqDecoder(parts, out_channels=out_channels, fields=fields, layers_per_block=layers_per_block,
                                 latent_channels=latent_channels, attention=mid_block_add_attention)
        # SD's 1×1 quant convs act on trivial fields: any 1×1 channel mixing commutes with moving pixels
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)

    def encode(self, x: Tensor, return_dict: bool = True):
        posterior = DiagonalGaussianDistribution(self.quant_conv(self.encoder(x)))
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: Tensor, return_dict: bool = True):
        dec = self.decoder(self.post_quant_conv(z))
        return DecoderOutput(sample=dec) if return_dict else (dec,)

    def forward(self, sample: Tensor, sample_posterior: bool = False, return_dict: bool = True,
                generator: torch.Generator | None = None):
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(z, return_dict=return_dict)


@dataclasses.dataclass(frozen=True)
class EquivariantVAEConfig:
    """An :class:`EquivariantAutoencoderKL`. ``block_fields`` are regular fields per level (channels =
    fields × |G|); ``norm_num_groups`` must divide every entry; ``downsample="asymmetric"`` reproduces SD's
    padding (not equivariant; kept for the measurement that shows why)."""

    block_fields: tuple[int, ...] = (16, 32, 64, 64)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 8
    group: str = "D4"
    downsample: str = "avgpool"
    mid_block_add_attention: bool = True

    def __post_init__(self):
        check_choice("group", self.group, GROUPS)
        check_choice("downsample", self.downsample, DOWNSAMPLES)
        if not self.block_fields:
            raise ConfigError("block_fields must name at least one level")
        for c in self.block_fields:
            check_positive("block_fields", c)
            if c % self.norm_num_groups:
                raise ConfigError(f"norm_num_groups={self.norm_num_groups} must divide every entry of "
                                  f"block_fields, not {c}")
        check_positive("layers_per_block", self.layers_per_block)
        check_positive("latent_channels", self.latent_channels)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.block_fields) - 1)


def build_equivariant_vae(cfg: EquivariantVAEConfig) -> EquivariantAutoencoderKL:
    """A freshly initialised :class:`EquivariantAutoencoderKL` (seed the global RNG first)."""
    return EquivariantAutoencoderKL(**{k: v for k, v in dataclasses.asdict(cfg).items()})
