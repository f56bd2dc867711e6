"""Each metric once. Inputs are tensors (any device); outputs are Python floats, tensors or DataFrames.

Units are in the names: ``*_pct`` are percentages, ``*_deg`` degrees, ``*_db`` decibels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from rotcore.results import value_range
from rotcore.rotate import rotate_batch, signed_diff_deg
from rotcore.train import predict

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------------------------
# Classification


def accuracy_pct(pred: Tensor, y: Tensor) -> float:
    """Top-1 accuracy in percent; ``pred`` is logits ``(N, K)`` or labels ``(N,)``."""
    labels = pred.argmax(-1) if pred.ndim == 2 else pred
    return 100.0 * (labels.to(y.device) == y).double().mean().item()


def confusion_matrix(y_true: Tensor, y_pred: Tensor, num_classes: int) -> Tensor:
    """``(K, K)`` counts; row = true class, column = predicted class."""
    idx = y_true.long().cpu() * num_classes + y_pred.long().cpu()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def precision_recall_f1(cm: Tensor) -> dict[str, Tensor | float]:
    """Per-class precision, recall and F1 (percent) from a confusion matrix, plus their macro means."""
    cm = cm.double()
    tp = cm.diag()
    precision = 100 * tp / cm.sum(0).clamp_min(1)
    recall = 100 * tp / cm.sum(1).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    return {"precision_pct": precision, "recall_pct": recall, "f1_pct": f1,
            "macro_precision_pct": precision.mean().item(), "macro_recall_pct": recall.mean().item(),
            "macro_f1_pct": f1.mean().item()}


def six_nine_confusion(preds: Mapping[str, Tensor], y: Tensor, angles_deg: Sequence[float], *,
                       names: Mapping[str, str] | None = None, six: int = 6, nine: int = 9):
    """Per model and angle: the share (percent) of 6s predicted as 9 and of 9s predicted as 6.

    ``preds`` maps a model key to its predicted labels ``(A, N)``, one row per angle of ``angles_deg``, for
    the items whose true labels are ``y`` ``(N,)`` (a classifier's own predictions, or a judge's reading of a
    model's decoded outputs). ``names`` maps a key to the name shown in the ``model`` column (default: the
    key). Returns a long DataFrame ``model, angle_deg, six_as_nine_pct, nine_as_six_pct`` (NaN where the
    test set has no 6 or no 9).
    """
    import pandas as pd

    y = y.cpu()
    is_six, is_nine = y == six, y == nine
    rows = []
    for key, p in preds.items():
        p = torch.as_tensor(p).cpu()
        if p.shape != (len(angles_deg), len(y)):
            raise ValueError(f"preds[{key!r}] has shape {tuple(p.shape)}; expected ({len(angles_deg)}, {len(y)})")
        for a, pa in zip(angles_deg, p):
            rows.append({"model": (names or {}).get(key, key), "angle_deg": a,
                         "six_as_nine_pct": 100 * (pa[is_six] == nine).double().mean().item(),
                         "nine_as_six_pct": 100 * (pa[is_nine] == six).double().mean().item()})
    return pd.DataFrame(rows, columns=["model", "angle_deg", "six_as_nine_pct", "nine_as_six_pct"])


def predict_labels_rotated(model: nn.Module, x: Tensor, angle_deg: float, *, batch_size: int = 2048,
                           device=None, rotate_kwargs: dict | None = None) -> Tensor:
    """Predicted labels of ``x`` rotated by ``angle_deg`` (rotation done per batch on the device)."""
    kw = rotate_kwargs or {}
    return predict(model, x, batch_size=batch_size, device=device,
                   fn=lambda m, xb: m(rotate_batch(xb, angle_deg, **kw)).argmax(-1))


def accuracy_by_angle(model: nn.Module, x: Tensor, y: Tensor, angles_deg: Sequence[float], *,
                      batch_size: int = 2048, device=None, rotate_kwargs: dict | None = None,
                      progress: bool = False):
    """Accuracy of ``model`` on ``x`` rotated by each angle, overall and per class.

    Returns a long DataFrame with columns ``angle_deg``, ``label`` (``"all"`` or the class), ``acc_pct``,
    ``n``, and an ``(angles, N)`` tensor of predicted labels (for confusion matrices by angle).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    rows, preds = [], []
    y_cpu = y.cpu()
    classes = torch.unique(y_cpu).tolist()
    for a in tqdm(angles_deg, desc="angles", leave=False, disable=not progress):
        p = predict_labels_rotated(model, x, float(a), batch_size=batch_size, device=device,
                                   rotate_kwargs=rotate_kwargs).cpu().long()
        preds.append(p)
        correct = (p == y_cpu).double()
        rows.append({"angle_deg": float(a), "label": "all", "acc_pct": 100 * correct.mean().item(), "n": len(y_cpu)})
        for c in classes:
            m = y_cpu == c
            rows.append({"angle_deg": float(a), "label": str(c), "acc_pct": 100 * correct[m].mean().item(),
                         "n": int(m.sum())})
    return pd.DataFrame(rows), torch.stack(preds)


# ---------------------------------------------------------------------------------------------------------
# Equivariance and invariance (exact checks in float64 where the math promises exactness)


@torch.no_grad()
def equivariance_error(f: Callable[[Tensor], Tensor], x: Tensor, g_in: Callable[[Tensor], Tensor],
                       g_out: Callable[[Tensor], Tensor] | None = None, *, dtype: torch.dtype | None = None,
                       relative: bool = False) -> float:
    """``max |f(g_in(x)) - g_out(f(x))|`` (``g_out=None`` checks invariance: ``g_out`` = identity).

    ``dtype=torch.float64`` runs the check in double precision (model and input are cast for the check
    and the model's dtype is restored). ``relative=True`` divides by ``max |f(x)|``.
    """
    module = f if isinstance(f, nn.Module) else None
    old_dtype = None
    if dtype is not None:
        x = x.to(dtype)
        if module is not None:
            old_dtype = next(module.parameters()).dtype
            module.to(dtype)
    try:
        fx = f(x)
        lhs = f(g_in(x))
        rhs = g_out(fx) if g_out is not None else fx
        err = (lhs - rhs).abs().max().item()
        return err / max(fx.abs().max().item(), 1e-30) if relative else err
    finally:
        if old_dtype is not None:
            module.to(old_dtype)


def _rotation_errors(model: nn.Module, x: Tensor, angle_deg: float | Sequence[float],
                     distance: Callable[[Tensor, Tensor], float], *, dtype: torch.dtype | None,
                     rotate_kwargs: dict | None) -> float | dict[float, float]:
    """``distance(model(rotate(x, a)), model(x))`` for each angle, in eval mode (optionally in ``dtype``).

    With ``dtype`` the model is cast *before* it enters eval mode, because escnn expands and caches its
    filters when switching to eval; casting afterwards would keep float32 filters. The cast and the mode
    are undone afterwards. One float for a scalar angle, ``{angle: value}`` for a list.
    """
    kw = rotate_kwargs or {}
    angles = [float(angle_deg)] if isinstance(angle_deg, (int, float)) else [float(a) for a in angle_deg]
    was = model.training
    old_dtype = next(model.parameters()).dtype
    try:
        if dtype is not None:
            model.train()
            model.to(dtype)
            x = x.to(dtype)
        model.eval()
        with torch.no_grad():
            fx = model(x)
            errs = {a: distance(model(rotate_batch(x, a, **kw)), fx) for a in angles}
    finally:
        if dtype is not None:
            model.train()
            model.to(old_dtype)
        model.train(was)
    return errs[angles[0]] if isinstance(angle_deg, (int, float)) else errs


def invariance_error(model: nn.Module, x: Tensor, angle_deg: float | Sequence[float], *,
                     dtype: torch.dtype | None = None, relative: bool = False,
                     rotate_kwargs: dict | None = None) -> float | dict[float, float]:
    """``max |model(rotate(x, angle)) - model(x)|`` in eval mode; one float, or ``{angle: error}`` for a list.

    ``dtype=torch.float64`` runs the check in double precision (see :func:`_rotation_errors` for why the
    cast happens before eval mode). ``relative=True`` divides by ``max |model(x)|``.
    """
    def distance(fr: Tensor, fx: Tensor) -> float:
        scale = max(fx.abs().max().item(), 1e-30) if relative else 1.0
        return (fr - fx).abs().max().item() / scale

    return _rotation_errors(model, x, angle_deg, distance, dtype=dtype, rotate_kwargs=rotate_kwargs)


def latent_invariance_error(model: nn.Module, x: Tensor, angle_deg: float | Sequence[float], *,
                            dtype: torch.dtype | None = None,
                            rotate_kwargs: dict | None = None) -> float | dict[float, float]:
    """``max_i ‖model(rotate(x_i, angle)) − model(x_i)‖₂`` over the images of ``x``, in eval mode.

    The Euclidean norm of the change of each image's output vector (e.g. a latent code ``(B, d)``), then the
    worst image; one float, or ``{angle: error}`` for a list. ``dtype`` is handled as in
    :func:`invariance_error` (cast before eval, undone afterwards).
    """
    def distance(fr: Tensor, fx: Tensor) -> float:
        return (fr.flatten(1) - fx.flatten(1)).norm(dim=1).max().item()

    return _rotation_errors(model, x, angle_deg, distance, dtype=dtype, rotate_kwargs=rotate_kwargs)


def invariance_errors(models: Mapping[str, nn.Module], x: Tensor, angles_deg: Sequence[float], *,
                      distance: str = "max_abs", labels: Mapping[str, str] | None = None):
    """How much each model's output changes when its input is rotated, per model and angle (a DataFrame).

    ``distance="max_abs"``: :func:`invariance_error` (largest change of any output entry, e.g. a logit);
    ``"l2"``: :func:`latent_invariance_error` (largest per-image Euclidean change, e.g. a latent code).
    Multiples of 90° are measured in float64, where a model invariant by construction shows rounding only;
    other angles in float32 (resampling makes them inexact anyway). Index ``model`` (the keys), columns
    ``label`` (``labels[key]``, default the key), ``rot<angle>`` per angle and ``rot90_max``, the largest
    error over the multiples of 90° (NaN if none was asked for).
    """
    import pandas as pd

    errors = {"max_abs": invariance_error, "l2": latent_invariance_error}
    if distance not in errors:
        raise ValueError(f"distance={distance!r}; choose one of {tuple(errors)}")
    err_fn = errors[distance]
    angles = [float(a) for a in angles_deg]
    exact = [a for a in angles if a % 90 == 0]
    other = [a for a in angles if a % 90 != 0]
    rows = []
    for key, model in models.items():
        errs = err_fn(model, x, exact, dtype=torch.float64) if exact else {}
        errs.update(err_fn(model, x, other) if other else {})
        rows.append({"model": key, "label": (labels or {}).get(key, key), **{f"rot{a:g}": errs[a] for a in angles}})
    out = pd.DataFrame(rows, columns=["model", "label", *[f"rot{a:g}" for a in angles]]).set_index("model")
    quarter = [f"rot{a:g}" for a in exact]
    out["rot90_max"] = out[quarter].max(axis=1) if quarter else float("nan")
    return out


# ---------------------------------------------------------------------------------------------------------
# Angles


def circular_error_deg(pred_deg: Tensor, true_deg: Tensor) -> Tensor:
    """Circular absolute error ``min(|Δ|, 360 - |Δ|)`` in degrees, elementwise, in ``[0, 180]``."""
    return signed_diff_deg(pred_deg, true_deg).abs()


def axial_error_deg(pred_deg: Tensor, true_deg: Tensor) -> Tensor:
    """Angle error ignoring half turns, in ``[0, 90]``: ``min(e, 180 - e)`` of the circular error ``e``.

    For digits that look alike after 180° (0, 1, 8; 6 vs 9) it separates "wrong axis" from "upside down".
    """
    e = circular_error_deg(pred_deg, true_deg)
    return torch.minimum(e, 180.0 - e)


def angle_error_summary(err_deg: Tensor, within_deg: Sequence[float] = (2, 5, 10, 15)) -> dict[str, float]:
    """MAE, median, p90/p95/p99 and the share within each threshold (percent) of circular errors."""
    e = err_deg.double().flatten().cpu()
    q = torch.quantile(e, torch.tensor([0.5, 0.9, 0.95, 0.99], dtype=torch.float64))
    out = {"mae_deg": e.mean().item(), "median_deg": q[0].item(), "p90_deg": q[1].item(),
           "p95_deg": q[2].item(), "p99_deg": q[3].item()}
    for t in within_deg:
        out[f"within{t:g}_pct"] = 100 * (e <= t).double().mean().item()
    return out


def error_by_angle(err_deg: Tensor, true_deg: Tensor, *, bin_deg: float = 30.0):
    """Mean circular error per bin of the true angle: DataFrame ``angle_deg`` (bin centre), ``mae_deg``, ``n``."""
    import pandas as pd

    e, a = err_deg.double().flatten().cpu(), torch.remainder(true_deg.double().flatten().cpu(), 360.0)
    idx = torch.floor(a / bin_deg).long()
    rows = []
    for b in range(int(round(360 / bin_deg))):
        m = idx == b
        if m.any():
            rows.append({"angle_deg": (b + 0.5) * bin_deg, "mae_deg": e[m].mean().item(), "n": int(m.sum())})
    return pd.DataFrame(rows)


def coverage_curve(err_deg: Tensor, confidence: Tensor, coverages_pct: Sequence[float] = tuple(range(10, 101, 10))):
    """Abstention: keep the most confident ``c`` % of predictions and score only those.

    Returns a DataFrame with ``coverage_pct``, ``threshold`` (the lowest confidence kept), ``mae_deg``,
    ``median_deg`` and ``within5_pct`` per coverage. Ties in confidence are broken by order (stable sort).
    """
    import pandas as pd

    e = err_deg.double().flatten().cpu()
    conf = confidence.double().flatten().cpu()
    order = torch.argsort(conf, descending=True, stable=True)
    rows = []
    for c in coverages_pct:
        k = max(1, round(len(e) * float(c) / 100))
        kept = e[order[:k]]
        rows.append({"coverage_pct": float(c), "threshold": conf[order[k - 1]].item(), "mae_deg": kept.mean().item(),
                     "median_deg": kept.median().item(), "within5_pct": 100 * (kept <= 5).double().mean().item()})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------
# Images


def mse(x_hat: Tensor, x: Tensor) -> float:
    return torch.mean((x_hat.float() - x.float()) ** 2).item()


def mse_per_image(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error of each image, ``(N,)`` float32 (mean over channels and pixels)."""
    return ((x_hat.float() - x.float()) ** 2).flatten(1).mean(1)


def psnr_db(x_hat: Tensor, x: Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio over the whole batch (torchmetrics), images in ``[0, data_range]``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(x_hat.float(), x.float(), data_range=data_range).item()


def psnr_from_mse_db(mse_value: float, data_range: float = 1.0) -> float:
    """``10·log10(data_range² / MSE)`` in dB, for an MSE already pooled over a set (``inf`` for 0)."""
    import math

    if mse_value < 0:
        raise ValueError(f"an MSE cannot be negative, got {mse_value}")
    return math.inf if mse_value == 0 else 10.0 * math.log10(data_range**2 / mse_value)


def ssim(x_hat: Tensor, x: Tensor, data_range: float = 1.0) -> float:
    """Mean structural similarity (torchmetrics, Gaussian window 11, σ 1.5)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(x_hat.float(), x.float(), data_range=data_range).item()


def ssim_per_image(x_hat: Tensor, x: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity of each image, ``(N,)`` (torchmetrics, Gaussian window 11, σ 1.5); the batch
    mean of this equals :func:`ssim`."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(x_hat.float(), x.float(), data_range=data_range, reduction="none")


# ---------------------------------------------------------------------------------------------------------
# Representations


@torch.no_grad()
def knn_predict(ref_z: Tensor, ref_y: Tensor, query_z: Tensor, *, k: int = 5, metric: str = "euclidean",
                num_classes: int | None = None, batch_size: int = 4096) -> Tensor:
    """Majority vote of the ``k`` nearest reference points for every query: labels ``(Q,)``.

    ``metric``: ``"euclidean"`` or ``"cosine"`` (for unit vectors both rank neighbours identically). Ties
    between classes go to the class of the nearer neighbours. Exact (brute force), batched over queries, on
    the device of ``ref_z``.
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric={metric!r}; choose 'euclidean' or 'cosine'")
    if not 1 <= k <= len(ref_z):
        raise ValueError(f"k={k} must be in [1, {len(ref_z)}] (the number of reference points)")
    num_classes = num_classes or int(ref_y.max().item()) + 1
    ref = ref_z.float()
    if metric == "cosine":
        ref = torch.nn.functional.normalize(ref, dim=-1)
    ref_y = ref_y.to(ref.device)
    # votes of nearer neighbours weigh a little more, which only breaks ties
    weights = 1.0 + 1e-3 * torch.arange(k, 0, -1, device=ref.device, dtype=torch.float32)
    out = []
    for i in range(0, len(query_z), batch_size):
        q = query_z[i : i + batch_size].to(ref.device).float()
        if metric == "cosine":
            q = torch.nn.functional.normalize(q, dim=-1)
        idx = torch.cdist(q, ref).topk(k, largest=False).indices  # (b, k), nearest first
        votes = torch.zeros(len(q), num_classes, device=ref.device)
        votes.scatter_add_(1, ref_y[idx], weights.expand(len(q), k))
        out.append(votes.argmax(-1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=ref.device)


# ---------------------------------------------------------------------------------------------------------
# Uncertainty: one way to put a 95 % interval on a headline number


def _as_array(values):
    import numpy as np

    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=float).ravel()


class Estimate(NamedTuple):
    """A headline number with its 95 % interval: unpacks as ``(estimate, (lo, hi) | None, n, method)``."""

    estimate: float
    ci: tuple[float, float] | None
    n: int
    method: str


def mean_ci95(values) -> Estimate:
    """Mean of independent repeats (seeds) and its Student-t 95 % interval.

    One value has no interval (``None``). Use it for numbers repeated over seeds; for numbers computed over
    many test items use :func:`bootstrap_ci95`, clustered by the unit that was sampled, and for a proportion of
    pooled samples :func:`wilson_ci95`. A t interval can leave a bounded quantity's range (a percentage near
    100 over 3 seeds); :func:`with_ci` clips it to the range of the metric and says so in its method.
    """
    from scipy import stats

    v = _as_array(values)
    if v.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    m = float(v.mean())
    if v.size < 2:
        return Estimate(m, None, 1, "single run: no interval")
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / v.size ** 0.5)
    return Estimate(m, (m - half, m + half), int(v.size), f"Student t over {v.size} seeds")


def wilson_ci95(successes, n: int | None = None) -> Estimate:
    """A proportion in percent with its Wilson score 95 % interval, which never leaves [0, 100].

    ``successes``: a count (then give ``n``) or an array of 0/1 outcomes (pooled over seeds and items). The
    interval treats the outcomes as independent; when they cluster (several samples per digit or per seed) use
    :func:`bootstrap_ci95` with ``clusters`` instead.
    """
    import numpy as np

    if n is None:
        v = _as_array(successes)
        k, n = float(v.sum()), int(v.size)
    else:
        k = float(successes)
    if n <= 0:
        raise ValueError("wilson_ci95 needs at least one outcome")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_ci95: {k} successes out of {n}")
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return Estimate(100 * p, (100 * lo, 100 * hi), int(n), f"Wilson score over {n} pooled outcomes")


def wilson_band(pct, n):
    """Wilson score 95 % bounds (percent, inside [0, 100]) for proportions given in percent, each over ``n``
    outcomes: the per-point interval band of a curve such as accuracy against the angle (cheap: no resampling).
    ``pct`` and ``n`` are scalars or arrays of one shape (``n`` may be a scalar for all). Returns ``(lo, hi)``
    arrays. Like :func:`wilson_ci95` it treats the outcomes as independent: readings of the same test digits by
    models trained with several seeds, pooled, are counted as that many outcomes, which makes the band narrower
    than a seed-clustered interval."""
    import numpy as np

    p = np.atleast_1d(np.asarray(pct, dtype=float))
    n = np.broadcast_to(np.asarray(n), p.shape)
    lo, hi = np.empty_like(p), np.empty_like(p)
    for i, (pi, ni) in enumerate(zip(p.ravel(), n.ravel())):
        if not (pi == pi) or ni <= 0:  # NaN or no outcome: no band
            lo.flat[i] = hi.flat[i] = float("nan")
            continue
        k = min(max(round(pi * ni / 100), 0), int(ni))
        _, (a, b), *_ = wilson_ci95(k, int(ni))
        lo.flat[i], hi.flat[i] = min(a, pi), max(b, pi)  # float rounding at 0 or 100 % must not drop the point
    return lo, hi


def bootstrap_ci95(values, *, clusters=None, statistic: Callable | None = None, n_boot: int = 2000,
                   seed: int = 0, unit: str | None = None) -> Estimate:
    """A statistic of ``values`` with a percentile-bootstrap 95 % interval: ``(estimate, (lo, hi), n_units)``.

    ``clusters`` (one id per value) resamples whole clusters with replacement, e.g. all rotated copies of a
    photo together, since 8 angles of one photo are not 8 independent tests. Without it every value is its own
    unit. ``statistic`` maps a 1-D array to a number (default: the mean). ``n_units`` is the number of clusters
    (or values); ``unit`` names it in the method ("digit", "photo"). A percentile interval stays inside the range
    of a bounded statistic. Deterministic for a given ``seed``. Not guaranteed: good coverage with very few
    clusters.
    """
    import numpy as np

    v = _as_array(values)
    if v.size == 0:
        raise ValueError("bootstrap_ci95 needs at least one value")
    stat = statistic or np.mean
    if clusters is None:
        groups = [np.array([i]) for i in range(v.size)]
    else:
        c = np.asarray(clusters.detach().cpu() if isinstance(clusters, torch.Tensor) else clusters).ravel()
        if len(c) != v.size:
            raise ValueError(f"clusters has {len(c)} ids for {v.size} values")
        _, inverse = np.unique(c, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        groups = np.split(order, bounds)
    rng = np.random.default_rng(seed)
    k = len(groups)
    draws = rng.integers(0, k, size=(n_boot, k))
    boot = np.empty(n_boot)
    for b in range(n_boot):
        boot[b] = stat(v[np.concatenate([groups[j] for j in draws[b]])])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    what = unit or ("cluster" if clusters is not None else "item")
    return Estimate(float(stat(v)), (float(lo), float(hi)), k,
                    f"percentile bootstrap over {k} {what}s ({n_boot} resamples)")


def with_ci(name: str, estimate: float, ci: tuple[float, float] | None, n: int,
            method: str | None = None) -> dict[str, object]:
    """The results-JSON form of a headline number: ``{name, name_ci95: [lo, hi] | None, name_n,
    name_ci_method}``; takes an :class:`Estimate` unpacked (``with_ci(name, *mean_ci95(v))``).

    The one place an interval meets its quantity's range (:func:`value_range`): an interval that leaves it (a
    Student t over 3 seeds of a percentage near 100) is clipped, and the method says so.
    """
    out: dict[str, object] = {name: float(estimate), f"{name}_ci95": None, f"{name}_n": int(n),
                              f"{name}_ci_method": method}
    if ci is not None:
        lo, hi = float(ci[0]), float(ci[1])
        low, high = value_range(name)
        if lo < low or hi > high:
            lo, hi = max(lo, low), min(hi, high)
            out[f"{name}_ci_method"] = (method or "interval") + f", clipped to the range [{low:g}, {high:g}]"
        out[f"{name}_ci95"] = [lo, hi]
    return out


def intervals_apart(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two intervals ``(lo, hi)`` are both given and do not overlap (touching ends overlap). The one
    test a discussion uses before it says two numbers differ; ``None`` (no interval: one seed) is never apart."""
    return a is not None and b is not None and (a[0] > b[1] or b[0] > a[1])
