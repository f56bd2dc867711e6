"""Grad-CAM (Selvaraju et al. 2017): where in the image a model looks for the quantity it predicts.

A small implementation with hooks, so the study needs no extra package. For an angle model the scalar we
explain is the length of the predicted vector along its own direction, ``<v(x), v(x)/|v(x)|>`` with the
direction held fixed: "what made the model confident in the angle it chose".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def grad_cam(model: nn.Module, layer: nn.Module, x: Tensor, score_fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Grad-CAM maps ``(B, H, W)`` in [0, 1] (each map divided by its own maximum) for a batch ``x``.

    Args:
        model: called as ``model(x)``; put in eval mode for the call (and restored).
        layer: the module whose output ``A`` (``(B, K, h, w)``) is explained, e.g. ResNet's ``layer4``.
        score_fn: maps the model's output to one score per image ``(B,)``; its gradient is used.

    ``cam = relu(Σ_k α_k A_k)`` with ``α_k`` the spatial mean of ``∂score/∂A_k``, upsampled bilinearly to
    ``x``'s size. Not guaranteed: a map is only as fine as ``layer``'s grid (7×7 for ResNet18 at 224 px).

    ``layer`` may be frozen (run under ``no_grad``, as the frozen blocks of a partly fine-tuned network): its
    output is then made a leaf that requires a gradient, and ``∂score/∂A`` flows through the layers after it
    only, which is all Grad-CAM needs (no gradient through the frozen layers themselves).
    """
    saved: dict[str, Tensor] = {}

    def hook(_module, _inp, out):
        if not out.requires_grad:  # a frozen layer (run without gradients): explain its output as a leaf, so
            out = out.detach().requires_grad_(True)  # the gradient flows only through the layers after it
            saved["a"] = out
            return out
        saved["a"] = out
        return None

    handle = layer.register_forward_hook(hook)
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(False)
            score = score_fn(model(x))
            act = saved["a"]
            (grad,) = torch.autograd.grad(score.sum(), act)
    finally:
        handle.remove()
        model.train(was)
    weights = grad.mean(dim=(-2, -1), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return cam / peak


def angle_confidence_score(to_vec: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Score for :func:`grad_cam` on an angle model: the predicted vector projected on its own (detached)
    direction."""

    def score(out: Tensor) -> Tensor:
        v = to_vec(out)
        return (v * F.normalize(v.detach(), dim=-1)).sum(-1)

    return score
