"""A Tiny AutoEncoder (the TAESD family), FLUX.2 variant "TAEF2", written from its state dicts' layout.

Both halves are plain ``nn.Sequential`` stacks of 3×3 convolutions and residual blocks with 64 channels, so
the pretrained weights load by index. The encoder takes images in [0, 1] and downsamples 8× with three
stride-2 convolutions to ``latent_channels`` (32 for TAEF2); the decoder soft-clamps the latent
(``3·tanh(z/3)``), upsamples 8× (nearest neighbour, then a convolution) and returns images in about [0, 1].
TAEF2 adds, before each of the three lowest-resolution blocks of both halves, a residual branch
1×1 conv → GroupNorm(4) → ReLU → 1×1 conv (``x + pool(x)``).

The latent is deterministic (no posterior, no KL). :class:`TinyAutoencoder` exposes ``encode``/``decode`` on
[0, 1] images. Weights: :func:`load_taef2` reads ``taef2_encoder.pth`` / ``taef2_decoder.pth`` from
``$ROTBOOK_DATA/taesd`` (offline) or from the cache ``$ROTBOOK_CACHE/taesd`` (default ``./.cache``),
downloading them there from the public repository madebyollin/taesd (MIT) at a pinned commit, checked by
sha256, when neither has them and the network allows (Colab).

**Why not diffusers' ``AutoencoderTiny``** (checked against diffusers 0.42.1, ``models/autoencoders/
autoencoder_tiny.py`` and ``AutoencoderTinyBlock`` in ``models/unets/unet_2d_blocks.py``). Most of TAEF2 fits
its config: ``latent_channels=32``, widths 64, ``num_encoder_blocks=(1, 3, 3, 3)``,
``num_decoder_blocks=(3, 3, 3, 1)``, nearest-neighbour upsampling, the decoder's ``3·tanh(z/3)`` and the same
``Sequential`` indices (the decoder shifted by one: diffusers applies the soft clamp in ``forward``, not as a
layer; :func:`autoencoder_tiny_key` maps the names). The latent's layout is the same (B, 32, H/8, W/8), and
the scaling differs only at the boundary: ``AutoencoderTiny`` takes and returns images in [-1, 1] (it maps
them to TAESD's [0, 1] inside), and its ``latent_magnitude``/``latent_shift`` act only in
``scale_latents``/``unscale_latents``, which encode/decode do not call. What it cannot express is the FLUX.2
variant's residual branch in the six lowest-resolution blocks (``x + pool(x)``, pool = 1×1 conv → GroupNorm(4)
→ ReLU → 1×1 conv, 24 of TAEF2's 158 tensors): ``AutoencoderTinyBlock`` is ``relu(conv(x) + skip(x))`` with no
place for it and no config option adds one. Loading TAEF2 into it would drop those branches and change every
output, so TAEF2 stays in this module (``tests/test_eqvae.py::test_autoencoder_tiny_cannot_hold_taef2`` checks
that those branches are all that is missing); saving and reloading through diffusers stays tested for the
``AutoencoderKL`` bases.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
from pathlib import Path

import torch
from torch import nn

from rotcore.config import check_positive
from rotcore.paths import MissingDataError, cache_root, data_root

TAEF2_FILES = ("taef2_encoder.pth", "taef2_decoder.pth")
TAEF2_COMMIT = "5cccb12dc72074a4be35680c3b108548a7c69978"
TAEF2_URL = "https://raw.githubusercontent.com/madebyollin/taesd/{commit}/{name}"
TAEF2_SHA256 = {
    "taef2_encoder.pth": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    "taef2_decoder.pth": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
}
DOWNLOAD_HOST = ("raw.githubusercontent.com", 443)


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


def autoencoder_tiny_key(key: str) -> str:
    """The name of one of our state-dict tensors in diffusers' ``AutoencoderTiny`` (``encoder.3.conv.0.weight``
    -> ``encoder.layers.3.conv.0.weight``; the decoder's indices shift by one, its soft clamp being no layer
    there). The pooled branches (``.pool.``) map to names ``AutoencoderTiny`` does not have."""
    part, index, rest = key.split(".", 2)
    return f"{part}.layers.{int(index) - (part == 'decoder')}.{rest}"


def taef2_folder() -> Path:
    """The offline folder: ``$ROTBOOK_DATA/taesd``."""
    return data_root() / "taesd"


def taef2_cache() -> Path:
    """Where downloaded weights go: ``$ROTBOOK_CACHE/taesd`` (:func:`rotcore.paths.cache_root`)."""
    return cache_root() / "taesd"


def _has_weights(folder: Path) -> bool:
    return all((folder / f).is_file() for f in TAEF2_FILES)


def _offline() -> bool:
    flags = (os.environ.get(v, "").strip().lower() for v in ("ROTBOOK_OFFLINE", "HF_HUB_OFFLINE"))
    return any(f in ("1", "true", "yes", "on") for f in flags)


def download_taef2(folder: str | Path, *, timeout_s: float = 30.0) -> Path:
    """Download TAEF2's two weight files into ``folder`` from madebyollin/taesd at :data:`TAEF2_COMMIT`,
    checking each against :data:`TAEF2_SHA256` before it is moved into place. Returns the folder; raises
    :class:`MissingDataError` (naming what to set) when offline, unreachable or corrupted."""
    import urllib.request

    folder = Path(folder)
    hint = (f"put {' and '.join(TAEF2_FILES)} in $ROTBOOK_DATA/taesd (the repository madebyollin/taesd, MIT "
            f"licence, commit {TAEF2_COMMIT[:7]}), or use base='pretrain'")
    if _offline():
        raise MissingDataError(f"TAEF2 weights are not on this machine and ROTBOOK_OFFLINE/HF_HUB_OFFLINE is set, "
                               f"so they are not downloaded: {hint}")
    try:
        socket.create_connection(DOWNLOAD_HOST, timeout=3.0).close()
    except OSError:
        raise MissingDataError(f"TAEF2 weights are not on this machine and {DOWNLOAD_HOST[0]} cannot be "
                               f"reached to download them: {hint}") from None
    folder.mkdir(parents=True, exist_ok=True)
    for name in TAEF2_FILES:
        if (folder / name).is_file():
            continue
        url = TAEF2_URL.format(commit=TAEF2_COMMIT, name=name)
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                blob = response.read()
        except OSError as err:
            raise MissingDataError(f"downloading {url} failed ({type(err).__name__}: {err}): {hint}") from None
        digest = hashlib.sha256(blob).hexdigest()
        if digest != TAEF2_SHA256[name]:
            raise MissingDataError(f"{url} has sha256 {digest[:12]}…, not the pinned {TAEF2_SHA256[name][:12]}…: "
                                   f"refusing to load it; {hint}")
        tmp = folder / (name + ".part")
        tmp.write_bytes(blob)
        os.replace(tmp, folder / name)
    return folder


def load_taef2(folder: str | Path | None = None, *, download: bool = True) -> TinyAutoencoder:
    """TAEF2 with its pretrained weights.

    From ``folder`` when given; otherwise from ``$ROTBOOK_DATA/taesd``, then the cache
    (:func:`taef2_cache`). When none holds the files and ``download`` is true, they are downloaded (into
    ``folder``, or the cache) by :func:`download_taef2`. Raises :class:`rotcore.paths.MissingDataError` naming
    the folder, the files and what to set; ``load_state_dict`` is strict, so weights of another layout fail
    loudly.
    """
    candidates = [Path(folder)] if folder is not None else [taef2_folder(), taef2_cache()]
    found = next((c for c in candidates if _has_weights(c)), None)
    if found is None and download:
        found = download_taef2(candidates[-1])
    if found is None:
        missing = [f for f in TAEF2_FILES if not (candidates[0] / f).is_file()]
        raise MissingDataError(
            f"TAEF2 weights not found: {', '.join(missing)} missing in {candidates[0]}. Put taef2_encoder.pth and "
            "taef2_decoder.pth there (from the public repository madebyollin/taesd, MIT licence), set "
            "ROTBOOK_DATA to a data folder holding taesd/, or use base='pretrain'.")
    model = TinyAutoencoder(TinyAEConfig())
    for part, name in zip((model.encoder, model.decoder), TAEF2_FILES):
        part.load_state_dict(torch.load(found / name, map_location="cpu", weights_only=True))
    return model
