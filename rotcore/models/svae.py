"""Variational auto-encoders with a Gaussian or a hyperspherical (Power Spherical) latent.

One model class, :class:`VAE`, built from a frozen :class:`VAEConfig`:

* **latent** ``"gaussian"``: ``q(z|x) = N(μ, diag σ²)`` with a standard normal prior, ``z ∈ R^d``;
  ``"power_spherical"``: ``q(z|x) = PowerSpherical(μ, κ)`` (De Cao & Aziz 2020) with the uniform prior on the
  unit sphere ``S^{d-1} ⊂ R^d``. As in the S-VAE authors' code, ``d`` (``latent_dim``) is the dimension of the
  space the code lives in, so a hyperspherical code has one degree of freedom fewer than a Gaussian one.
* **encoder**: the E(2)-CNN classifier layer plan of :mod:`rotcore.models.classifier` with a head that
  outputs the posterior's parameters instead of class logits. ``group="C1"`` is a plain CNN; ``"C8"``,
  ``"C16"`` are escnn G-CNNs over regular fields, made invariant by group pooling before the head, so the
  whole posterior (direction *and* concentration) is invariant to the input's rotation: exactly for
  quarter turns of a 28×28 image (the plan has no strided step on an odd grid and its 2×2 poolings tile
  20×20 and 10×10 symmetrically), not exactly for other angles: how far the code moves there is measured,
  not guaranteed (study 03's invariance table: a trained C8 code moved on average by about half the distance
  between two digits' codes at 15° and 30°). ``orbit_deg`` (:class:`OrbitPooled`) also max-pools those invariant
  features over copies of the input turned by the given angles (e.g. ±22.5°), at no extra parameters; with ±22.5°
  a 45° turn swaps the copies up to resampling, which brought the code's change at 45° close to zero in study 03,
  not its change at 15° or 30°.
* **decoder** (:class:`Decoder`, one design for every encoder): ``z`` → linear → ``(C, 7, 7)`` → 3×3 convs
  with two nearest-neighbour upsamplings → Bernoulli logits ``(B, 1, 28, 28)``.

The concentration starts **concentrated**: ``κ = κ_min + exp(min(raw + log κ₀, log κ_max))`` with ``κ₀ =
kappa_init``, so at initialisation (``raw ≈ 0``) the posterior is tight around ``μ`` (a test), and ``κ`` can
still move over orders of magnitude. A posterior that starts near the uniform prior
(the former ``softplus(raw) + 1``, κ ≈ 1.7: mean cos(z, μ) ≈ 0.11 on S^15) gives the decoder nearly uniform
samples; with it, issue 21 measured a KL of 1.3 nats after one epoch and upright 9s decoded right 71.3 % (cpu
settings), against 18.4 nats and 95.1 % with the κ output started near 300, and a KL warm-up did not help. That
the decoder learns to ignore the code is our reading of those numbers, a hypothesis. The
distribution and KL are always computed in float32 or float64, never under bf16 autocast. A non-finite loss
still stops :func:`rotcore.train.fit` with ``NonFiniteLossError``.

``VAE.forward(x)`` returns the **code** (the posterior's location ``μ``: a unit vector for the hyperspherical
latent), so generic tools (:func:`rotcore.train.predict`, :func:`rotcore.metrics.invariance_error`) work on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from rotcore.config import ConfigError, check_angles, check_choice, check_positive
from rotcore.models.classifier import GROUP_RE, ClassifierConfig, build_classifier
from rotcore.rotate import rotate_batch

Tensor = torch.Tensor

LATENTS = ("gaussian", "power_spherical")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The encoder: the classifier layer plan (``rotcore.models.classifier``) over ``group`` at ``width``,
    with a fully connected head ``fc`` that outputs the posterior's parameters. ``orbit_deg`` (G-CNNs only; empty:
    none): the features are pooled over copies of the input turned by these angles (:class:`OrbitPooled`)."""

    group: str = "C1"
    width: float = 0.25
    fc: tuple[int, ...] = (128,)
    orbit_deg: tuple[float, ...] = ()

    def __post_init__(self):
        if not GROUP_RE.match(self.group):
            raise ConfigError(f"encoder group={self.group!r}; use C1 (plain CNN) or C<N>, e.g. C8, C16")
        if self.group.startswith("D"):
            raise ConfigError("dihedral encoders are not supported here (a reflection-invariant code would also "
                              "merge mirror-image digits); use C<N>")
        check_positive("encoder width", self.width)
        for f in self.fc:
            check_positive("encoder fc", f)
        if self.orbit_deg:
            if not self.is_equivariant:
                raise ConfigError("orbit_deg pools a G-CNN's group-pooled features over turned copies; it needs an "
                                  f"equivariant group such as C8, got group={self.group!r}")
            # signed angles are fine (−22.5°); taken mod 360° they must be distinct finite angles
            check_angles("orbit_deg (mod 360°)", tuple(
                a % 360.0 if isinstance(a, (int, float)) and not isinstance(a, bool) else a for a in self.orbit_deg))

    @property
    def is_equivariant(self) -> bool:
        return self.group != "C1"

    def backbone(self, n_out: int) -> ClassifierConfig:
        return ClassifierConfig(group=self.group, width=self.width, fc=self.fc, dropout=0.0, num_classes=n_out)


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """``channels[0]`` at 7×7, ``channels[1]`` at 14×14, ``channels[2]`` at 28×28 (two 3×3 convs per scale)."""

    channels: tuple[int, int, int] = (96, 64, 32)

    def __post_init__(self):
        if len(self.channels) != 3:
            raise ConfigError(f"decoder channels needs three entries (7×7, 14×14, 28×28), got {self.channels}")
        for c in self.channels:
            check_positive("decoder channels", c)


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    latent: str = "power_spherical"
    latent_dim: int = 16
    encoder: EncoderConfig = EncoderConfig()
    decoder: DecoderConfig = DecoderConfig()
    kappa_init: float = 100.0
    kappa_min: float = 1e-3
    kappa_max: float = 1e5
    min_std: float = 1e-4

    def __post_init__(self):
        check_choice("latent", self.latent, LATENTS)
        if isinstance(self.latent_dim, bool) or not isinstance(self.latent_dim, int):
            raise ConfigError(f"latent_dim must be an integer, got {self.latent_dim!r}")
        low = 2 if self.latent == "power_spherical" else 1
        if self.latent_dim < low:
            raise ConfigError(f"latent_dim={self.latent_dim}: a {self.latent} latent needs latent_dim >= {low} "
                              "(the code lives on the sphere S^(d-1) in R^d)")
        check_positive("kappa_min", self.kappa_min)
        check_positive("kappa_init", self.kappa_init)
        check_positive("min_std", self.min_std)
        if not self.kappa_max > self.kappa_init > self.kappa_min:
            raise ConfigError(f"need kappa_min < kappa_init < kappa_max, got {self.kappa_min}, {self.kappa_init}, "
                              f"{self.kappa_max}")

    @property
    def encoder_outputs(self) -> int:
        return 2 * self.latent_dim if self.latent == "gaussian" else self.latent_dim + 1


class OrbitPooled(nn.Module):
    """Orbit pooling in front of a G-CNN's head: the encoder's group-pooled (invariant) features of the input
    turned by each of ``angles`` (bilinear, one batch: batch norm's training statistics are shared by the copies),
    max-pooled over the copies, then the encoder's fully connected head.

    C_N's equivariance to turns by 360°/N holds only approximately on the pixel grid: the C8 encoder's code moves
    most at 45° (study 03). Pooling over copies turned by ±22.5° makes a 45° turn of the input swap the copies up to
    resampling, so the code moves much less there (not at 15° or 30°). Both copies should be turned by an angle that
    is not a multiple of 90°: with the untouched input among them the measured 45° invariance was lost
    (``scripts/check_sgvae_encoder_variants.py``; that the network tells the sharp copy from the resampled one is
    our hypothesis, not tested). Exactly invariant to quarter
    turns, like the encoder (a quarter turn of the square grid commutes with the bilinear turn of a copy).

    Calls the escnn :class:`rotcore.models.classifier.GCNN`'s ``pooled_features`` and ``head``, which is what its
    ``forward`` chains.
    """

    def __init__(self, gcnn: nn.Module, angles_deg: tuple[float, ...]):
        super().__init__()
        if not angles_deg:
            raise ValueError("OrbitPooled needs at least one angle")
        self.gcnn, self.angles_deg = gcnn, tuple(float(a) for a in angles_deg)

    def forward(self, x: Tensor) -> Tensor:
        n, b = len(self.angles_deg), len(x)
        angles = torch.tensor(self.angles_deg, dtype=torch.float64).repeat_interleave(b)
        copies = rotate_batch(x.repeat(n, 1, 1, 1), angles)
        f = self.gcnn.pooled_features(copies)
        return self.gcnn.head(f.view(n, b, -1).amax(0))


class Decoder(nn.Module):
    """``z (B, d)`` → Bernoulli logits ``(B, 1, 28, 28)``."""

    def __init__(self, latent_dim: int, cfg: DecoderConfig):
        super().__init__()
        c0, c1, c2 = cfg.channels
        self.c0 = c0
        self.fc = nn.Linear(latent_dim, c0 * 7 * 7)
        self.body = nn.Sequential(
            nn.ELU(), nn.Conv2d(c0, c0, 3, padding=1), nn.ELU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c0, c1, 3, padding=1), nn.ELU(),
            nn.Conv2d(c1, c1, 3, padding=1), nn.ELU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c1, c2, 3, padding=1), nn.ELU(),
            nn.Conv2d(c2, c2, 3, padding=1), nn.ELU(),
            nn.Conv2d(c2, 1, 3, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.fc(z).view(len(z), self.c0, 7, 7))


@contextlib.contextmanager
def _unvalidated():
    """Build distributions without argument validation: a NaN concentration then turns into a NaN loss, which
    ``fit`` reports as ``NonFiniteLossError`` (validation would raise a ValueError deep inside
    ``torch.distributions`` instead, and it costs a device sync per batch on a GPU)."""
    old = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(old)


def _full_precision(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class VAE(nn.Module):
    """A VAE on ``(B, 1, 28, 28)`` images in [0, 1] with a Bernoulli likelihood (see the module docstring).

    Not guaranteed: rotation invariance of the code for angles that are not multiples of 90°, even with an
    escnn encoder (the pixel grid is not symmetric under them).
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.config = cfg
        encoder = build_classifier(cfg.encoder.backbone(cfg.encoder_outputs))
        self.encoder = OrbitPooled(encoder, cfg.encoder.orbit_deg) if cfg.encoder.orbit_deg else encoder
        self.decoder = Decoder(cfg.latent_dim, cfg.decoder)

    # -- the posterior -------------------------------------------------------------------------------------
    def posterior_params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(loc, scale)``: for ``power_spherical`` the unit direction ``μ (B, d)`` and concentration
        ``κ (B,)``; for ``gaussian`` the mean ``(B, d)`` and standard deviation ``(B, d)``. Float32 or
        wider, whatever the autocast state."""
        d = self.config.latent_dim
        h = self.encoder(x)
        with torch.autocast(device_type=h.device.type, enabled=False):
            h = _full_precision(h)
            if self.config.latent == "gaussian":
                return h[:, :d], F.softplus(h[:, d:]) + self.config.min_std
            loc = F.normalize(h[:, :d], dim=-1, eps=1e-12)
            c = self.config
            kappa = c.kappa_min + torch.exp((h[:, d] + math.log(c.kappa_init)).clamp(max=math.log(c.kappa_max)))
            return loc, kappa

    @staticmethod
    def distribution(latent: str, loc: Tensor, scale: Tensor) -> torch.distributions.Distribution:
        """``q(z|x)`` from :meth:`posterior_params`' ``(loc, scale)`` (built without argument validation)."""
        with _unvalidated():
            if latent == "gaussian":
                return torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)
            from power_spherical import PowerSpherical

            return PowerSpherical(loc, scale)

    def prior(self, like: Tensor) -> torch.distributions.Distribution:
        """``p(z)``: standard normal on R^d, or uniform on S^(d-1); on ``like``'s device and dtype."""
        d = self.config.latent_dim
        with _unvalidated():
            if self.config.latent == "gaussian":
                zero = torch.zeros(d, device=like.device, dtype=like.dtype)
                return torch.distributions.Independent(torch.distributions.Normal(zero, torch.ones_like(zero)), 1)
            from power_spherical import HypersphericalUniform

            return HypersphericalUniform(d, device=like.device, dtype=like.dtype)

    def posterior(self, x: Tensor) -> torch.distributions.Distribution:
        return self.distribution(self.config.latent, *self.posterior_params(x))

    def forward(self, x: Tensor) -> Tensor:
        """The code ``(B, d)``: the posterior's location (a unit vector for the hyperspherical latent)."""
        return self.posterior_params(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits ``(B, 1, 28, 28)``; ``sigmoid`` gives the decoded image in [0, 1]."""
        return self.decoder(z)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the code (the posterior's location, not a sample): images ``(B, 1, 28, 28)`` in [0, 1]."""
        return torch.sigmoid(self.decode(self(x)))

    # -- the bounds ----------------------------------------------------------------------------------------
    def kl(self, loc: Tensor, scale: Tensor) -> Tensor:
        """Analytic ``KL(q(z|x) || p(z))`` per image ``(B,)``, in nats."""
        with torch.autocast(device_type=loc.device.type, enabled=False):
            q = self.distribution(self.config.latent, loc, scale)
            if self.config.latent == "gaussian":
                return torch.distributions.kl_divergence(q, self.prior(loc))
            # KL(q || uniform) = log |S^(d-1)| - H(q), with the sphere's area as a Python number (the
            # package's uniform prior turns it into a device tensor and back: one sync per batch)
            return log_sphere_area(self.config.latent_dim) - q.entropy()

    def elbo_terms(self, x_bin: Tensor) -> tuple[Tensor, Tensor]:
        """``(recon_nll, kl)`` per image, in nats, with one reparameterised sample: ``-ELBO = recon_nll + kl``.

        ``x_bin``: binary images ``(B, 1, 28, 28)`` (the Bernoulli likelihood's targets).
        """
        loc, scale = self.posterior_params(x_bin)
        with torch.autocast(device_type=loc.device.type, enabled=False):
            z = self.distribution(self.config.latent, loc, scale).rsample()
        logits = self.decode(z)
        recon = F.binary_cross_entropy_with_logits(_full_precision(logits), x_bin.to(_full_precision(logits).dtype),
                                                   reduction="none").flatten(1).sum(-1)
        return recon, self.kl(loc, scale)

    @torch.no_grad()
    def log_weights(self, x_bin: Tensor, n_samples: int) -> Tensor:
        """``log p(x, z_k) - log q(z_k | x)`` for ``n_samples`` posterior samples: ``(n_samples, B)``.

        ``logsumexp(w, 0) - log K`` is the importance-weighted bound (Burda et al. 2016); its mean is the ELBO.
        """
        loc, scale = self.posterior_params(x_bin)
        q = self.distribution(self.config.latent, loc, scale)
        z = q.sample((n_samples,))  # (K, B, d)
        log_q = q.log_prob(z)
        log_prior = self.prior(loc).log_prob(z)
        logits = self.decode(z.flatten(0, 1)).view(n_samples, len(x_bin), *x_bin.shape[1:])
        log_lik = -F.binary_cross_entropy_with_logits(
            logits.float(), x_bin.float().expand_as(logits), reduction="none").flatten(2).sum(-1)
        return log_lik + log_prior - log_q


def log_sphere_area(d: int) -> float:
    """``log`` of the surface area of the unit sphere ``S^(d-1)`` in ``R^d``: ``log(2 π^(d/2) / Γ(d/2))``."""
    return math.log(2.0) + 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d)


def build_vae(cfg: VAEConfig) -> VAE:
    """A freshly initialised VAE (weights from the current torch RNG: seed before calling), in train mode.

    escnn encoders are built once per config and process and then copied (see ``build_classifier``)."""
    return VAE(cfg).train()


def iw_bound(log_w: Tensor) -> Tensor:
    """The importance-weighted bound per image from :meth:`VAE.log_weights` ``(K, B)`` → ``(B,)`` nats."""
    return torch.logsumexp(log_w.double(), 0) - math.log(log_w.shape[0])
