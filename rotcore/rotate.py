"""THE way to rotate images in rotbook: whole batches, on their device, in one ``grid_sample`` call.

Conventions (used everywhere in the project):

* images are ``(B, C, H, W)`` tensors, row 0 at the top;
* a positive ``angle_deg`` turns the image **counter-clockwise** as displayed, like
  ``torchvision.transforms.functional.rotate`` and ``torch.rot90(x, 1, dims=(-2, -1))``;
* the rotation centre is the image centre (``align_corners=False`` geometry), so a 90° turn of a square
  image maps pixel centres onto pixel centres.

Two paths, one function. Angles that are multiples of 90° (on square images, or 180° on any image) take an
exact path through ``torch.rot90``: no interpolation, bit-identical to ``torch.rot90``. Every other angle
is resampled with ``grid_sample`` (``interpolation`` and ``padding`` below); that is an approximation
whose error depends on the image content, and it is not invertible (corners are cut, values are
smoothed).

The module is laid out by concept: rotating image batches; rotating and cropping in one resampling (photos);
random angles and sets of angles; angle codecs (degrees <-> unit vectors, wrapping, circular means); the
dihedral group D4 acting exactly on the last two axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
INTERPOLATIONS = ("bilinear", "nearest", "bicubic")
PADDINGS = ("zeros", "border", "reflection")
BORDERS = ("crop", "reflect", "zeros")
_EXACT_TOL = 1e-9


# ---------------------------------------------------------------------------------------------------------
# Rotating a batch of images: exact quarter turns, everything else resampled in one grid_sample call.


def _as_angle_tensor(angle_deg: float | Sequence[float] | Tensor, batch: int) -> Tensor:
    a = torch.as_tensor(angle_deg, dtype=torch.float64)
    if a.ndim == 0:
        a = a.expand(batch)
    if a.shape != (batch,):
        raise ValueError(f"angle_deg must be a scalar or have shape ({batch},), got {tuple(a.shape)}")
    if a.device.type == "cpu":
        if not torch.isfinite(a).all():
            raise ValueError("angle_deg contains non-finite values")
    else:  # checked on the device: a Python `if` here would make the host wait for the GPU every step
        torch._assert_async(torch.isfinite(a).all(), "angle_deg contains non-finite values")
    return a


def quarter_turns(angle_deg: Tensor) -> tuple[Tensor, Tensor]:
    """``(is_multiple_of_90, k)`` with ``k`` in {0, 1, 2, 3} for the multiples (float64 arithmetic)."""
    q = angle_deg.double() / 90.0
    k = torch.round(q)
    exact = (q - k).abs() < _EXACT_TOL
    return exact, torch.remainder(k, 4).long()


def rot90_batch(x: Tensor, k: int | Tensor) -> Tensor:
    """Rotate by ``k`` quarter turns counter-clockwise; ``k`` may differ per sample (shape ``(B,)``).

    The per-sample case is :func:`apply_d4_batch` with the rotations ``D4[k]`` (one implementation of "a
    different exact group element per sample")."""
    if not torch.is_tensor(k) or k.ndim == 0:
        return torch.rot90(x, int(k) % 4, dims=(-2, -1))
    k = torch.remainder(k.to(x.device).long(), 4)
    if x.shape[-1] != x.shape[-2] and bool((k % 2 == 1).any()):
        raise ValueError("odd quarter turns need square images")
    return apply_d4_batch(x, k)  # D4[k] is the rotation by 90°·k for k in {0, 1, 2, 3}


def rotation_matrix(angle_deg: Tensor, height: int, width: int) -> Tensor:
    """``affine_grid`` thetas ``(B, 2, 3)`` that rotate by ``angle_deg`` counter-clockwise about the centre.

    Normalised coordinates are scaled by the aspect ratio so that non-square images rotate rigidly.
    """
    rad = torch.deg2rad(angle_deg.double())
    c, s = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(c)
    theta = torch.stack(
        [torch.stack([c, -s * height / width, zero], -1), torch.stack([s * width / height, c, zero], -1)], -2
    )
    return theta


def rotate_batch(
    x: Tensor,
    angle_deg: float | Sequence[float] | Tensor,
    *,
    interpolation: str = "bilinear",
    padding: str = "zeros",
    exact_rot90: bool = True,
) -> Tensor:
    """Rotate every image of ``x`` by its angle, counter-clockwise, in degrees; same shape out.

    Args:
        x: ``(B, C, H, W)`` floating tensor on any device (the work stays there).
        angle_deg: one angle for the batch, or one per image (``(B,)``); any real number, taken mod 360.
        interpolation: ``"bilinear"`` (default), ``"nearest"`` or ``"bicubic"`` (bicubic may overshoot the
            input's range; clamp if that matters).
        padding: what the corners that come from outside the image show: ``"zeros"`` (default),
            ``"border"`` or ``"reflection"``.
        exact_rot90: send multiples of 90° through ``torch.rot90`` (exact). With ``False`` every angle is
            resampled, which is what a test of the resampling path wants.

    Not guaranteed: rotations by other angles are not exactly invertible; mass near the corners is cut.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r}; choose one of {INTERPOLATIONS}")
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r}; choose one of {PADDINGS}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor, got {x.dtype}")
    b, _, h, w = x.shape
    angles = _as_angle_tensor(angle_deg, b)  # stays where it was given (host angles are decided on the host)
    if b == 0:
        return x.clone()
    if not exact_rot90:
        return _resample(x, angles.to(x.device), interpolation, padding)
    exact, k = quarter_turns(angles)
    if h != w:
        exact = exact & (k % 2 == 0)  # a quarter turn of a non-square image changes its shape
    if angles.device.type != "cpu":  # angles that live on an accelerator: never ask it which are exact
        return _rotate_without_sync(x, angles, exact, k, interpolation, padding)
    angles, exact, k = angles.to(x.device), exact.to(x.device), k.to(x.device)
    if bool(exact.all()):
        return rot90_batch(x, k)
    out = _resample(x, angles, interpolation, padding)
    if bool(exact.any()):
        idx = exact.nonzero(as_tuple=True)[0]
        out[idx] = rot90_batch(x[idx], k[idx])
    return out


def _resample(x: Tensor, angles: Tensor, interpolation: str, padding: str) -> Tensor:
    theta = rotation_matrix(angles, x.shape[-2], x.shape[-1]).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=interpolation, padding_mode=padding, align_corners=False)


def _rotate_without_sync(x: Tensor, angles: Tensor, exact: Tensor, k: Tensor, interpolation: str,
                         padding: str) -> Tensor:
    """The same result as the host path, with no host-device sync: every image is resampled, then the
    multiples of 90° are replaced by their exact quarter turns with masks (the host path asks the device
    which images are exact, which stalls a GPU training step)."""
    out = _resample(x, angles, interpolation, padding)
    square = x.shape[-1] == x.shape[-2]
    for kk in (0, 1, 2, 3) if square else (0, 2):
        mask = (exact & (k == kk)).view(-1, *([1] * (x.ndim - 1)))
        out = torch.where(mask, torch.rot90(x, kk, dims=(-2, -1)) if kk else x, out)
    return out


# ---------------------------------------------------------------------------------------------------------
# Rotate and crop in one resampling (photos): views that never show padding.


def safe_crop_fraction(size: int) -> float:
    """Side of the largest centred square that stays inside a ``size``-pixel square at *every* angle, as a
    fraction of ``size``: ``(1 - 1/size) / sqrt(2)``.

    The ``1 - 1/size`` margin keeps every bilinear sample at least half a pixel inside the image, so no
    padding value leaks into the crop even at 45° (where the rotated square's inner square is smallest).
    """
    return (1.0 - 1.0 / size) / 2**0.5


def rotate_crop_batch(
    x: Tensor,
    angle_deg: float | Sequence[float] | Tensor,
    *,
    out_size: int,
    border: str = "crop",
    scale: float | Tensor = 1.0,
    shift: Tensor | None = None,
    interpolation: str = "bilinear",
) -> Tensor:
    """Rotate square images counter-clockwise and resample them to ``out_size`` in one ``grid_sample`` call.

    Args:
        x: ``(B, C, S, S)`` floating tensor (square images).
        angle_deg: one angle or one per image, degrees, counter-clockwise.
        out_size: side of the output in pixels.
        border: ``"crop"``: keep the centred square of side :func:`safe_crop_fraction` ``× S``, which is
            inside the image at every angle, so the output never shows padding, corners or a border whose
            shape reveals the angle (the zoom is the same at every angle); ``"reflect"``: the whole rotated
            square, corners filled by reflection (the seed's default); ``"zeros"``: the whole square,
            black corners.
        scale: extra zoom in ``(0, 1]`` (1 = the strategy's full view), scalar or ``(B,)``; a smaller scale
            shows a smaller central region, so with ``"crop"`` it stays padding-free.
        shift: optional ``(B, 2)`` offsets ``(x, y)`` of the view's centre in the input, in normalised
            units (fractions of the half side); with ``"crop"`` the view stays padding-free as long as
            ``|shift| ≤ (1 - scale)(1 - 1/S)`` (the caller's job: :func:`random_view` keeps to it).
        interpolation: as in :func:`rotate_batch`.

    Multiples of 90° are not routed through ``torch.rot90`` here (the output is resampled anyway).
    """
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must be square images (B, C, S, S), got shape {tuple(x.shape)}")
    if border not in BORDERS:
        raise ValueError(f"border={border!r}; choose one of {BORDERS}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r}; choose one of {INTERPOLATIONS}")
    b, c, s, _ = x.shape
    angles = _as_angle_tensor(angle_deg, b).to(x.device)
    frac = safe_crop_fraction(s) if border == "crop" else 1.0
    scale_t = torch.as_tensor(scale, dtype=torch.float64, device=x.device).expand(b)
    theta = rotation_matrix(angles, s, s) * (frac * scale_t).view(b, 1, 1)
    if shift is not None:
        theta[:, :, 2] = shift.to(theta)
    grid = F.affine_grid(theta.to(x.dtype), [b, c, out_size, out_size], align_corners=False)
    padding = {"crop": "zeros", "reflect": "reflection", "zeros": "zeros"}[border]
    return F.grid_sample(x, grid, mode=interpolation, padding_mode=padding, align_corners=False)


def random_view(n: int, *, min_scale: float, max_shift: float, generator: torch.Generator | None = None,
                device=None) -> tuple[Tensor, Tensor]:
    """Random ``(scale, shift)`` for :func:`rotate_crop_batch` that stay padding-free with ``border="crop"``.

    ``scale`` is uniform in ``[min_scale, 1]``; the shift points in a uniform direction and its length is at
    most ``min(max_shift, (1 - scale)/sqrt(2))``, inside the padding-free bound of :func:`rotate_crop_batch`
    for any image of at least 4 pixels.
    """
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    gdev = generator.device if generator is not None else device
    scale = min_scale + (1 - min_scale) * torch.rand(n, generator=generator, device=gdev, dtype=torch.float64)
    room = ((1 - scale) / 2**0.5).clamp_min(0).clamp_max(max_shift)
    direction = torch.rand(n, generator=generator, device=gdev, dtype=torch.float64) * 2 * torch.pi
    radius = room * torch.rand(n, generator=generator, device=gdev, dtype=torch.float64)
    shift = torch.stack([radius * torch.cos(direction), radius * torch.sin(direction)], -1)
    return scale.to(device), shift.to(device)


# ---------------------------------------------------------------------------------------------------------
# Random angles, and sets of angles given as unions of intervals (training angles with held-out bands).


def random_angles(
    n: int, *, low_deg: float = 0.0, high_deg: float = 360.0, generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` angles drawn uniformly from ``[low_deg, high_deg)`` (float32, on ``device``)."""
    u = torch.rand(n, generator=generator, device=generator.device if generator is not None else device)
    return (low_deg + (high_deg - low_deg) * u).to(device)


def _intervals_tensor(intervals_deg: Sequence[tuple[float, float]], device=None) -> Tensor:
    iv = torch.as_tensor([[float(lo), float(hi)] for lo, hi in intervals_deg], dtype=torch.float64, device=device)
    if iv.ndim != 2 or iv.shape[1] != 2 or len(iv) == 0:
        raise ValueError(f"intervals_deg must be a non-empty sequence of (lo, hi) pairs, got {intervals_deg!r}")
    return iv


def random_angles_in(
    intervals_deg: Sequence[tuple[float, float]], n: int, *, generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` angles (float32, degrees) drawn uniformly from the union of ``[lo, hi)`` intervals.

    Intervals are assumed disjoint and inside ``[0, 360]`` (validate them with
    :func:`rotcore.config.check_angle_intervals`); each is picked with probability proportional to its length.
    """
    gen_device = generator.device if generator is not None else device
    iv = _intervals_tensor(intervals_deg, gen_device)
    length = iv[:, 1] - iv[:, 0]
    if bool((length <= 0).any()):
        raise ValueError(f"every interval needs lo < hi, got {intervals_deg!r}")
    pick = torch.multinomial(length / length.sum(), n, replacement=True, generator=generator)
    u = torch.rand(n, generator=generator, device=gen_device, dtype=torch.float64)
    angles = iv[pick, 0] + u * length[pick]
    return angles.float().to(device)


def in_intervals(angle_deg: Tensor, intervals_deg: Sequence[tuple[float, float]]) -> Tensor:
    """Boolean mask: is each angle (taken mod 360) inside one of the closed intervals ``[lo, hi]``?

    An interval ending at 360 also contains 0 (the circle closes there).
    """
    a = wrap_deg(torch.as_tensor(angle_deg, dtype=torch.float64))
    iv = _intervals_tensor(intervals_deg, a.device)
    lo, hi = iv[:, 0], iv[:, 1]
    inside = (a[..., None] >= lo) & (a[..., None] <= hi)
    inside |= (a[..., None] == 0) & (hi >= 360)
    return inside.any(-1)


def distance_to_intervals_deg(angle_deg: Tensor, intervals_deg: Sequence[tuple[float, float]]) -> Tensor:
    """Circular distance (degrees, float64, in ``[0, 180]``) from each angle to the nearest angle of the
    union of closed intervals; 0 inside. "How far outside the training angles is this test angle?"."""
    a = torch.as_tensor(angle_deg, dtype=torch.float64)
    iv = _intervals_tensor(intervals_deg, a.device)
    ends = signed_diff_deg(a[..., None, None], iv[None, :, :]).abs().amin((-1, -2))
    return torch.where(in_intervals(a, intervals_deg), torch.zeros_like(ends), ends)


def complement_intervals(intervals_deg: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """The parts of ``[0, 360)`` outside the (disjoint) intervals, as sorted ``(lo, hi)`` pairs."""
    out, cursor = [], 0.0
    for lo, hi in sorted((float(lo), float(hi)) for lo, hi in intervals_deg):
        if lo > cursor:
            out.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < 360.0:
        out.append((cursor, 360.0))
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------
# Angle codecs. Units are in the names; degrees are the public unit.


def wrap_deg(angle_deg: Tensor) -> Tensor:
    """Map any angle to ``[0, 360)``."""
    return torch.remainder(angle_deg, 360.0)


def signed_diff_deg(a_deg: Tensor, b_deg: Tensor) -> Tensor:
    """Signed difference ``a - b`` wrapped to ``[-180, 180)``."""
    return torch.remainder(a_deg - b_deg + 180.0, 360.0) - 180.0


def angle_to_vec(angle_deg: Tensor) -> Tensor:
    """``(..., 2)`` unit vectors ``(cos θ, sin θ)``."""
    rad = torch.deg2rad(angle_deg)
    return torch.stack([torch.cos(rad), torch.sin(rad)], dim=-1)


def vec_to_angle(vec: Tensor) -> Tensor:
    """Angle in ``[0, 360)`` of ``(..., 2)`` vectors ``(cos, sin)`` of any length (``atan2``)."""
    return wrap_deg(torch.rad2deg(torch.atan2(vec[..., 1], vec[..., 0])))


def rotate_vec(vec: Tensor, angle_deg: float | Tensor) -> Tensor:
    """Rotate ``(..., 2)`` vectors ``(cos, sin)`` counter-clockwise by ``angle_deg`` (adds to their angle)."""
    rad = torch.deg2rad(torch.as_tensor(angle_deg, dtype=vec.dtype, device=vec.device))
    c, s = torch.cos(rad), torch.sin(rad)
    return torch.stack([c * vec[..., 0] - s * vec[..., 1], s * vec[..., 0] + c * vec[..., 1]], -1)


def circular_mean_deg(angles_deg: Tensor, dim: int = -1, weights: Tensor | None = None) -> Tensor:
    """Circular mean along ``dim`` in ``[0, 360)`` (the angle of the mean unit vector)."""
    v = angle_to_vec(angles_deg)
    if weights is not None:
        v = v * weights.unsqueeze(-1)
    return vec_to_angle(v.sum(dim=dim if dim >= 0 else dim - 1))


def rot90_tta_vec(vec_fn, x: Tensor) -> Tensor:
    """Exact rot90 test-time augmentation for an angle predictor that outputs ``(B, 2)`` vectors.

    Predicts on ``x`` and its three quarter turns (``torch.rot90``, exact), turns each prediction back by
    ``-90°·k`` and averages the vectors (the circular mean, weighted by each vector's length). For a model
    that is exactly equivariant to quarter turns the result equals ``vec_fn(x)``. Square images only.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError("rot90 TTA needs square images")
    return torch.stack([rotate_vec(vec_fn(torch.rot90(x, k, dims=(-2, -1))).float(), -90.0 * k)
                        for k in range(4)]).mean(0)


# ---------------------------------------------------------------------------------------------------------
# The dihedral group D4 on the last two axes (images or latents): g = r^k after an optional flip.

D4 = ("e", "r90", "r180", "r270", "f", "r90f", "r180f", "r270f")


def _d4_parts(g: str) -> tuple[int, bool]:
    if g not in D4:
        raise ValueError(f"unknown D4 element {g!r}; choose one of {D4}")
    flip = g.endswith("f")
    core = g[:-1] if flip else g
    k = 0 if core in ("e", "") else int(core[1:]) // 90
    return k, flip


def d4_index(g: str) -> int:
    """Position of ``g`` in :data:`D4` (``"e"`` is 0)."""
    _d4_parts(g)
    return D4.index(g)


def angle_deg_of(g: str) -> float:
    """Rotation angle of ``g`` in degrees (its rotation part)."""
    return 90.0 * _d4_parts(g)[0]


def apply_d4(x: Tensor, g: str) -> Tensor:
    """Apply ``g`` to the last two axes: first a left-right flip if ``g`` ends in ``f``, then ``k`` quarter
    turns counter-clockwise. Exact (a permutation of entries)."""
    k, flip = _d4_parts(g)
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def apply_d4_batch(x: Tensor, g_index: Tensor) -> Tensor:
    """Apply a different D4 element to each sample: ``out[i] = apply_d4(x[i], D4[g_index[i]])``.

    ``x`` is ``(B, ..., H, W)`` with ``H == W`` whenever a quarter turn occurs; ``g_index`` is ``(B,)`` integers
    in ``[0, 8)`` (positions in :data:`D4`). Exact (a permutation of entries), one gather per element present.
    """
    g_index = torch.as_tensor(g_index, device=x.device).long()
    if g_index.shape != (x.shape[0],):
        raise ValueError(f"g_index must have shape ({x.shape[0]},), got {tuple(g_index.shape)}")
    if len(g_index) and (int(g_index.min()) < 0 or int(g_index.max()) >= len(D4)):
        raise ValueError(f"g_index values must lie in [0, {len(D4)})")
    out = x.clone()
    for i, g in enumerate(D4[1:], start=1):
        idx = (g_index == i).nonzero(as_tuple=True)[0]
        if len(idx):
            out[idx] = apply_d4(x[idx], g)
    return out


def d4_inverse(g: str) -> str:
    k, flip = _d4_parts(g)
    if flip:
        return g  # reflections are involutions
    return D4[(4 - k) % 4]


def d4_compose(g: str, h: str) -> str:
    """The element ``g ∘ h`` (apply ``h`` first)."""
    probe = torch.arange(4.0).reshape(1, 2, 2)
    target = apply_d4(apply_d4(probe, h), g)
    for e in D4:
        if torch.equal(apply_d4(probe, e), target):
            return e
    raise AssertionError("D4 is closed under composition")


def d4_subgroup_table(elements: Sequence[str]) -> list[list[int]]:
    """For a subgroup ``G`` of D4 given as names, ``table[h][k]`` = position in ``elements`` of ``h⁻¹ ∘ k``.

    This is the index map of the regular representation used by group convolutions
    (:mod:`rotcore.models.eqvae`). Raises ``ValueError`` if ``elements`` is not closed under composition.
    """
    elements = tuple(elements)
    pos = {g: i for i, g in enumerate(elements)}
    table = []
    for h in elements:
        row = []
        for k in elements:
            hk = d4_compose(d4_inverse(h), k)
            if hk not in pos:
                raise ValueError(f"{elements} is not a group: {d4_inverse(h)} ∘ {k} = {hk} is missing")
            row.append(pos[hk])
        table.append(row)
    return table


__all__ = [
    "BORDERS", "D4", "INTERPOLATIONS", "PADDINGS", "angle_deg_of", "angle_to_vec", "apply_d4",
    "apply_d4_batch", "circular_mean_deg", "complement_intervals", "d4_compose", "d4_index", "d4_inverse",
    "d4_subgroup_table", "distance_to_intervals_deg", "in_intervals", "quarter_turns", "random_angles",
    "random_angles_in", "random_view", "rot90_batch", "rot90_tta_vec", "rotate_batch", "rotate_crop_batch",
    "rotate_vec", "rotation_matrix", "safe_crop_fraction", "signed_diff_deg", "vec_to_angle", "wrap_deg",
]
