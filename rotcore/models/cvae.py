"""Conditional VAEs for rotated digits: one class, four ways to condition the decoder on the angle.

All four share the encoder (a conv stack to ``(μ, log σ²)``), the latent size and the decoder trunk (two
fully connected layers to a 7×7 map, then transposed convolutions up to 28×28); the digit enters the decoder
as a one-hot vector concatenated to ``z``. They differ only in how the angle enters:

``"scalar"`` (the seed's design)
    the signed angle in ``[-180°, 180°)`` divided by 180, one number concatenated to ``[z, one-hot]``. A
    scalar cannot be continuous over the whole circle: its seam sits at 180°.
``"film"``
    ``(cos θ, sin θ)`` through a small MLP that predicts a per-channel scale and shift (FiLM, Perez et al.
    2018) for the hidden layer and every decoder stage; the modulation starts as the identity.
``"rotation"`` (explicit rotation)
    the decoder never sees the angle: it draws an upright digit, which is then turned by the conditioned
    angle with :func:`rotcore.rotate.rotate_batch` (differentiable ``grid_sample``; multiples of 90° take its
    exact ``torch.rot90`` path). The *encoder* is given the input turned back by the known angle, so its
    code cannot depend on the angle either. Equivariant by construction: at multiples of 90° decoding at
    ``θ + 90°`` equals rotating the decoding at ``θ`` by 90°, bit for bit; at other angles the two agree up
    to the bilinear resampling (a bounded error, tested).
``"latent"`` (learned rotation, a homomorphism-style latent)
    the angle acts on the **code**, not on the image: the first ``2 * rot_blocks`` latent dimensions form
    2-D blocks, and θ turns block ``j`` by ``(j + 1)·θ`` (fixed integer frequencies 1, 2, …), a
    representation of the rotation group: acting by θ₁ and then θ₂ is acting by θ₁ + θ₂ (tested). An
    ordinary decoder (no angle input) draws the image from the turned code, so what a turn of the code does
    to the picture is learned from data. The encoder sees the rotated input without θ; its code is turned
    back by −θ, so the code describes the digit in a frame that does not depend on the angle, and a learned
    offset (the prior's mean in that frame, ``pose``) marks what "upright" looks like. Trained on pairs
    (:func:`rotcore.studies.cvae.cvae_loss`): the encoder sees the digit at one training angle, the decoder
    must draw it at another, so a turn of the code has to mean a turn of the picture.

Study 01 trains every variant on such pairs (``forward(x, y, a1, target_angle_deg=a2)``), and the scalar one
also on the seed's self-reconstruction, to show what that recipe does.

Outputs are pixel probabilities in float32 (the rotation variant rotates probabilities, so that corners
turned in from outside the image are 0, as in the rotated targets). The loss is :func:`elbo_loss`: binary
cross-entropy summed over pixels plus ``β`` × KL, both averaged over the batch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rotcore import config as _config
from rotcore.config import ConfigError, check_choice, check_positive
from rotcore.rotate import INTERPOLATIONS, angle_to_vec, rotate_batch, signed_diff_deg

Tensor = torch.Tensor

CONDITIONINGS = ("scalar", "film", "rotation", "latent")


@dataclasses.dataclass(frozen=True)
class CVAEConfig:
    """One conditional VAE. ``enc_channels`` / ``dec_channels``: channels per stage (each stage halves /
    doubles the grid, so ``image_size`` must be divisible by ``2 ** stages``)."""

    conditioning: str = "scalar"
    latent_dim: int = 16
    num_classes: int = 10
    image_size: int = 28
    enc_channels: tuple[int, ...] = (32, 64)
    enc_hidden: int = 256
    dec_hidden: int = 256
    dec_channels: tuple[int, ...] = (64, 32)
    film_hidden: int = 64
    interpolation: str = "bilinear"
    rot_blocks: int = 4  # "latent" only: 2-D blocks of the code turned by θ (frequencies 1..rot_blocks)

    def __post_init__(self):
        check_choice("conditioning", self.conditioning, CONDITIONINGS)
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        for name in ("latent_dim", "num_classes", "image_size", "enc_hidden", "dec_hidden", "film_hidden"):
            check_positive(name, getattr(self, name))
        for name in ("enc_channels", "dec_channels"):
            chans = getattr(self, name)
            if not chans or any(not isinstance(c, int) or c < 1 for c in chans):
                raise ConfigError(f"{name} must be a non-empty tuple of positive integers, got {chans!r}")
            if self.image_size % 2 ** len(chans):
                raise ConfigError(f"image_size={self.image_size} is not divisible by 2**{len(chans)} ({name})")
        check_positive("rot_blocks", self.rot_blocks)
        if self.conditioning == "latent" and 2 * self.rot_blocks > self.latent_dim:
            raise ConfigError(f"rot_blocks={self.rot_blocks} needs latent_dim >= {2 * self.rot_blocks} "
                              f"(each block is 2 dimensions), got latent_dim={self.latent_dim}")

    @classmethod
    def from_dict(cls, data) -> CVAEConfig:
        return _config.from_dict(cls, data)


class CVAEOutput(NamedTuple):
    x_hat: Tensor  # (B, 1, H, W) float32 probabilities
    mu: Tensor  # (B, latent_dim)
    logvar: Tensor  # (B, latent_dim)
    z: Tensor  # (B, latent_dim), the sample the decoder saw


class Encoder(nn.Module):
    """Conv stages (3×3 conv, ReLU, 3×3 conv, ReLU, 2×2 max pool), then two linear layers to ``(μ, log σ²)``."""

    def __init__(self, cfg: CVAEConfig):
        super().__init__()
        layers, c_in = [], 1
        for c in cfg.enc_channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        grid = cfg.image_size // 2 ** len(cfg.enc_channels)
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c_in * grid * grid, cfg.enc_hidden), nn.ReLU(inplace=True),
                                  nn.Linear(cfg.enc_hidden, 2 * cfg.latent_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.features(x)).chunk(2, dim=-1)
        return mu, logvar


class FiLM(nn.Module):
    """``h * (1 + γ) + β`` with ``(γ, β)`` predicted from a conditioning vector; zero-initialised (identity)."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        gamma, beta = self.proj(cond).chunk(2, dim=-1)
        if h.ndim == 4:
            gamma, beta = gamma[..., None, None], beta[..., None, None]
        return h * (1 + gamma) + beta


class Decoder(nn.Module):
    """``[z, one-hot digit (, angle scalar)]`` → FC → FC → ``(C, g, g)`` → stages (4×4 transposed conv stride 2,
    LeakyReLU, 3×3 conv, LeakyReLU) → 3×3 conv to one channel of logits. FiLM after the hidden FC layer and
    after every stage when ``conditioning == "film"``."""

    def __init__(self, cfg: CVAEConfig):
        super().__init__()
        self.config = cfg
        extra = 1 if cfg.conditioning == "scalar" else 0
        self.grid = cfg.image_size // 2 ** len(cfg.dec_channels)
        c0 = cfg.dec_channels[0]
        self.fc1 = nn.Linear(cfg.latent_dim + cfg.num_classes + extra, cfg.dec_hidden)
        self.fc2 = nn.Linear(cfg.dec_hidden, c0 * self.grid * self.grid)
        stages, c_in = [], c0
        for c in cfg.dec_channels:
            stages.append(nn.Sequential(nn.ConvTranspose2d(c_in, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                                        nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2)))
            c_in = c
        self.stages = nn.ModuleList(stages)
        self.out = nn.Conv2d(c_in, 1, 3, padding=1)
        self.film = cfg.conditioning == "film"
        if self.film:
            self.cond_net = nn.Sequential(nn.Linear(2, cfg.film_hidden), nn.SiLU(),
                                          nn.Linear(cfg.film_hidden, cfg.film_hidden), nn.SiLU())
            self.film_fc = FiLM(cfg.film_hidden, cfg.dec_hidden)
            self.film_stages = nn.ModuleList(FiLM(cfg.film_hidden, c) for c in cfg.dec_channels)

    def forward(self, z: Tensor, y: Tensor, angle_deg: Tensor) -> Tensor:
        """Logits ``(B, 1, H, W)``; ``angle_deg`` is ignored by the rotation variant (it rotates afterwards)."""
        parts = [z, F.one_hot(y.long(), self.config.num_classes).to(z.dtype)]
        if self.config.conditioning == "scalar":
            parts.append((signed_diff_deg(angle_deg.float(), torch.zeros_like(angle_deg.float())) / 180.0)
                         .to(z.dtype)[:, None])
        h = F.leaky_relu(self.fc1(torch.cat(parts, dim=-1)), 0.2)
        cond = self.cond_net(angle_to_vec(angle_deg.float()).to(z.dtype)) if self.film else None
        if self.film:
            h = self.film_fc(h, cond)
        h = F.leaky_relu(self.fc2(h), 0.2).view(len(z), -1, self.grid, self.grid)
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if self.film:
                h = self.film_stages[i](h, cond)
        return self.out(h)


def latent_action(z: Tensor, angle_deg: Tensor, blocks: int) -> Tensor:
    """Turn the first ``blocks`` 2-D blocks of ``z`` ``(B, d)``: block ``j`` by ``(j + 1)·θ`` (θ in degrees,
    one per row, counter-clockwise); the other dimensions are left as they are. A group action: turning by
    θ₁ and then by θ₂ is turning by θ₁ + θ₂, and θ = 360° is the identity."""
    if blocks == 0:
        return z
    freq = torch.arange(1, blocks + 1, device=z.device, dtype=torch.float64)
    phase = torch.deg2rad(angle_deg.to(device=z.device, dtype=torch.float64))[:, None] * freq  # (B, blocks)
    c, s = torch.cos(phase).to(z.dtype), torch.sin(phase).to(z.dtype)
    u, v = z[:, 0:2 * blocks:2], z[:, 1:2 * blocks:2]
    turned = torch.stack([c * u - s * v, s * u + c * v], dim=-1).flatten(1)
    return torch.cat([turned, z[:, 2 * blocks:]], dim=1)


class CVAE(nn.Module):
    """A conditional VAE on ``(B, 1, H, W)`` images in [0, 1], conditioned on digit ``y`` and ``angle_deg``.

    ``forward(x, y, angle_deg)`` encodes the (rotated) input, samples ``z`` in training mode (uses ``μ`` in
    eval mode, or always with ``sample=False``) and decodes. ``decode(z, y, angle_deg)`` generates.
    Angles are degrees, counter-clockwise, one per image (``(B,)``) or one for the batch.
    """

    def __init__(self, cfg: CVAEConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if cfg.conditioning == "latent":
            # the prior's mean in the angle-free frame: where "upright" sits (learned; zero at the start)
            self.pose = nn.Parameter(torch.zeros(2 * cfg.rot_blocks))

    @property
    def explicit_rotation(self) -> bool:
        return self.config.conditioning == "rotation"

    def _angles(self, angle_deg, n: int, device) -> Tensor:
        a = torch.as_tensor(angle_deg, dtype=torch.float32, device=device)
        return a.expand(n) if a.ndim == 0 else a

    @property
    def latent_rotation(self) -> bool:
        return self.config.conditioning == "latent"

    def _offset(self, z: Tensor) -> Tensor:
        """The learned pose as a ``(1, latent_dim)`` offset (zero outside the turned blocks)."""
        return F.pad(self.pose.to(z.dtype), (0, z.shape[1] - len(self.pose)))[None]

    def encode(self, x: Tensor, angle_deg: Tensor | float) -> tuple[Tensor, Tensor]:
        """``(μ, log σ²)`` of the rotated input ``x``. The rotation variant first turns ``x`` back by the known
        angle, so its code describes the upright digit; the latent variant turns its code back by −θ and
        measures it from the learned pose (both dimensions of a block share one variance, so the turned
        posterior is still a diagonal Gaussian); the others encode ``x`` as it is."""
        if self.explicit_rotation:
            a = self._angles(angle_deg, len(x), x.device)
            x = rotate_batch(x, -a.double(), interpolation=self.config.interpolation)
        mu, logvar = self.encoder(x)
        if self.latent_rotation:
            k = self.config.rot_blocks
            a = self._angles(angle_deg, len(x), x.device)
            mu = latent_action(mu, -a, k) - self._offset(mu)
            tied = logvar[:, :2 * k].unflatten(1, (k, 2)).mean(-1, keepdim=True).expand(-1, -1, 2).flatten(1)
            logvar = torch.cat([tied, logvar[:, 2 * k:]], dim=1)
        return mu, logvar

    def upright_probs(self, z: Tensor, y: Tensor) -> Tensor:
        """The rotation variant's upright digit (probabilities, float32) before it is turned."""
        if not self.explicit_rotation:
            raise RuntimeError("only the explicit-rotation decoder draws an upright digit")
        zero = torch.zeros(len(z), device=z.device)
        return torch.sigmoid(self.decoder(z, y, zero).float())

    def decode(self, z: Tensor, y: Tensor, angle_deg: Tensor | float) -> Tensor:
        """Pixel probabilities ``(B, 1, H, W)`` (float32) of digit ``y`` with latent ``z`` at ``angle_deg``."""
        a = self._angles(angle_deg, len(z), z.device)
        if self.explicit_rotation:
            return rotate_batch(self.upright_probs(z, y), a.double(), interpolation=self.config.interpolation)
        if self.latent_rotation:  # the decoder sees the code turned by θ, never θ itself
            z = latent_action(z + self._offset(z), a, self.config.rot_blocks)
        return torch.sigmoid(self.decoder(z, y, a).float())

    def forward(self, x: Tensor, y: Tensor, angle_deg: Tensor | float, *, sample: bool | None = None,
                target_angle_deg: Tensor | float | None = None) -> CVAEOutput:
        """Encode ``x`` (at ``angle_deg``) and decode it at ``target_angle_deg`` (default: the same angle)."""
        mu, logvar = self.encode(x, angle_deg)
        sample = self.training if sample is None else sample
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        out_angle = angle_deg if target_angle_deg is None else target_angle_deg
        return CVAEOutput(self.decode(z, y, out_angle), mu, logvar, z)


def build_cvae(cfg: CVAEConfig) -> CVAE:
    return CVAE(cfg)


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z|x) ‖ N(0, I)) per latent dimension, ``(B, latent_dim)``, float32."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def elbo_loss(out: CVAEOutput, x: Tensor, *, beta: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """``BCE + β·KL``: binary cross-entropy summed over pixels and KL summed over latent dimensions, both
    averaged over the batch (nats per image). Computed in float32 outside autocast (BCE is not autocast-safe).
    Returns ``(loss, {"bce": ..., "kl": ...})``."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        bce = F.binary_cross_entropy(out.x_hat.float(), x.float(), reduction="sum") / len(x)
        kl = kl_per_dim(out.mu, out.logvar).sum(-1).mean()
    return bce + beta * kl, {"bce": bce.detach(), "kl": kl.detach()}


def load_cvae(checkpoint: str | Path, *, map_location="cpu") -> CVAE:
    """Rebuild a model from a :func:`rotcore.train.fit` checkpoint alone: the architecture comes from the
    config stored in it (``config.run.model``), the weights from its best state when ``fit`` would have
    restored one, else from its last epoch. Returned in eval mode."""
    from rotcore.train import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    run = ckpt["config"].get("run") or {}
    if "model" not in run:
        raise KeyError(f"{checkpoint}: the stored run config has no 'model' entry; was it written by this study?")
    model = CVAE(CVAEConfig.from_dict(run["model"]))
    use_best = ckpt.get("best_state") is not None and ckpt["config"]["fit"].get("restore_best", True)
    model.load_state_dict(ckpt["best_state"] if use_best else ckpt["model"])
    return model.to(map_location).eval()
