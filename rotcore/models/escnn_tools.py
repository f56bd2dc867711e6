"""Helpers around escnn shared by the equivariant models.

escnn's ``R2Conv`` initialises its weights with ``generalized_he_init``, whose variance computation loops in
Python over every (basis element × input field × output field): ~50 s for one MNIST-sized C8 network on a
CPU, paid again for every seed. :func:`he_variances` computes the same variances once per field-type
pair and tiles them (identical values: ``tests/test_models.py`` compares them with escnn's), and
:func:`r2conv` builds an ``R2Conv`` with that initialisation; :func:`reset_parameters` re-draws a copied
network so that seeds do not pay for building it again.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch


def he_variances(basisexpansion) -> torch.Tensor:
    """The per-weight scales of escnn's ``generalized_he_init`` for a ``BlocksBasisExpansion``."""
    bm = basisexpansion
    out_reprs, in_reprs = bm._out_reprs, bm._in_reprs
    out_pos, in_fields = [0], defaultdict(list)
    for r in out_reprs:
        out_pos.append(out_pos[-1] + len(r.irreps))
    for i, r in enumerate(in_reprs):
        in_fields[r.name].append(i)
    out_fields = defaultdict(list)
    for o, r in enumerate(out_reprs):
        out_fields[r.name].append(o)

    pair_attrs = {}
    for pair in bm._representations_pairs:
        block = getattr(bm, f"block_expansion_{bm._escape_pair(pair)}")
        pair_attrs[pair] = [(a["in_irrep"], a["out_irrep_idx"]) for a in block.get_basis_info()]

    inputs = defaultdict(set)
    counts = defaultdict(int)
    for pair, attrs in pair_attrs.items():
        n_in = len(in_fields[pair[0]])
        per_block = defaultdict(int)
        for in_irrep, out_idx in attrs:
            per_block[(in_irrep, out_idx)] += 1
        for o in out_fields[pair[1]]:
            for (in_irrep, out_idx), c in per_block.items():
                inputs[out_pos[o] + out_idx].add(in_irrep)
                counts[(in_irrep, out_pos[o] + out_idx)] += n_in * c

    chunks = []
    for pair, attrs in pair_attrs.items():
        n_in = len(in_fields[pair[0]])
        for o in out_fields[pair[1]]:
            block = torch.tensor([
                1.0 / (len(inputs[out_pos[o] + oi]) * counts[(ii, out_pos[o] + oi)]) ** 0.5 for ii, oi in attrs
            ])
            chunks.append(block.repeat(n_in))
    out = torch.cat(chunks) if chunks else torch.ones(0)
    if out.shape != (bm.dimension(),):
        raise RuntimeError(f"he_variances: got {tuple(out.shape)} weights, expected ({bm.dimension()},)")
    return out


def r2conv(in_type, out_type, kernel_size: int, **kwargs):
    """``escnn.nn.R2Conv`` with generalised He initialisation computed by :func:`he_variances` and a filter
    basis that is exactly equivariant to quarter turns (:func:`symmetrize_quarter_turns`)."""
    from escnn import nn as enn

    conv = enn.R2Conv(in_type, out_type, kernel_size, initialize=False, **kwargs)
    symmetrize_quarter_turns(conv)
    conv.he_scale = he_variances(conv.basisexpansion)  # a plain attribute: kept by deepcopy, not in state_dict
    init_r2conv(conv)
    return conv


def _quarter_turn(group):
    """The group's rotation by +90°, or ``None`` when it has none (rotation order not a multiple of 4)."""
    kind = type(group).__name__
    order = group.order() if kind == "CyclicGroup" else getattr(group, "rotation_order", None)
    if kind not in ("CyclicGroup", "DihedralGroup") or not order or order % 4:
        return None
    return group.element(order // 4) if kind == "CyclicGroup" else group.element((0, order // 4))


def _quarter_turn_points(kernel_size: int, dilation: int) -> torch.Tensor:
    """For escnn's filter grid (x right, y up): the index of each point turned by +90°, (x, y) -> (-y, x)."""
    from escnn.nn.modules.conv.rd_convolution import get_grid_coords

    pts = np.round(get_grid_coords(2, kernel_size, dilation), 6)
    index = {tuple(p): i for i, p in enumerate(pts)}
    return torch.tensor([index[(-y + 0.0, x + 0.0)] for x, y in pts])


def _exact(matrix) -> torch.Tensor:
    """A representation matrix of a quarter turn, with its float64 noise removed where its entries are
    integers (permutations and signed permutations: regular, trivial and most irreps). Without this, the
    four-term average below often lands on a float32 rounding midpoint and ~1e-16 noise decides the side."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    rounded = m.round()
    return rounded if (m - rounded).abs().max() < 1e-9 else m


@torch.no_grad()
def symmetrize_quarter_turns(conv) -> None:
    """Make an ``R2Conv``'s sampled filter basis exactly equivariant to the 90° rotations of its group.

    escnn samples the analytic basis with float32 arithmetic, so a filter and its quarter-turned twin differ
    by rounding noise (~1e-7 relative) and a G-CNN is invariant to 90° only to ~1e-6, even in a float64
    check. Each basis element ``S`` is replaced by its average over the four quarter turns ``g``,
    ``mean_g rho_out(g)^-1 S(g p) rho_in(g)`` (the projection onto the equivariant subspace, which ``S``
    already lies in up to that noise: the change is ~1e-8). With integer (permutation) representation
    matrices the four float32 terms sum exactly in float64, so twins round to identical float32 numbers and
    the network is quarter-turn equivariant to float64 precision after a cast. Blocks shared between convolutions (escnn caches them) are done once; groups
    without quarter turns are left alone.
    """
    from escnn.nn.modules.basismanager.basisexpansion_singleblock import SingleBlockBasisExpansion

    group = conv.in_type.gspace.fibergroup
    g = _quarter_turn(group)
    if g is None:
        return
    turn = _quarter_turn_points(conv.kernel_size, conv.dilation)
    # by name from the conv's own field types (after a restriction, escnn keeps names like "D16:regular_0"
    # that the subgroup's registry does not know)
    reprs = {r.name: r for r in (*conv.in_type.representations, *conv.out_type.representations)}
    bm = conv.basisexpansion
    for pair in bm._representations_pairs:
        block = getattr(bm, f"block_expansion_{bm._escape_pair(pair)}")
        if not isinstance(block, SingleBlockBasisExpansion) or getattr(block, "_quarter_turn_symmetric", False):
            continue
        rho_in, rho_out = reprs[pair[0]], reprs[pair[1]]
        basis = block.sampled_basis.double()  # (elements, out, in, points)
        total = torch.zeros_like(basis)
        points, element = torch.arange(basis.shape[-1]), group.identity
        for _ in range(4):
            r_in, r_out = _exact(rho_in(element)), _exact(rho_out(element))
            total += torch.einsum("ab,kbcp,cd->kadp", r_out.T, basis[..., points], r_in)  # rho orthogonal
            points, element = turn[points], element @ g
        block.sampled_basis = (total / 4).to(block.sampled_basis.dtype)
        block._quarter_turn_symmetric = True


@torch.no_grad()
def init_r2conv(conv) -> None:
    """(Re-)draw an ``R2Conv`` built by :func:`r2conv`: He-scaled normal weights, zero bias."""
    conv.weights.copy_(conv.he_scale * torch.randn_like(conv.weights))
    if conv.bias is not None:
        conv.bias.zero_()


def reset_parameters(model: torch.nn.Module) -> torch.nn.Module:
    """Re-initialise every layer of ``model`` from the current torch RNG (escnn convolutions built by
    :func:`r2conv`, and torch's own Linear/Conv/BatchNorm layers). Lets a built network be copied instead
    of rebuilt, which for escnn means not solving the kernel bases again."""
    from torch import nn

    for m in model.modules():
        if hasattr(m, "he_scale"):
            init_r2conv(m)
        elif isinstance(m, (nn.Linear, nn.Conv2d, nn.modules.batchnorm._BatchNorm)):
            m.reset_parameters()
    return model
