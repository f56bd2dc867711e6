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
    """``escnn.nn.R2Conv`` with generalised He initialisation computed by :func:`he_variances`."""
    from escnn import nn as enn

    conv = enn.R2Conv(in_type, out_type, kernel_size, initialize=False, **kwargs)
    conv.he_scale = he_variances(conv.basisexpansion)  # a plain attribute: kept by deepcopy, not in state_dict
    init_r2conv(conv)
    return conv


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
