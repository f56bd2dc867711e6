"""Figures. Every function takes an optional ``ax`` (or makes its own figure) and returns the Figure.

Style is set once with :func:`use_style`. Static figures always exist (the published site has no kernel);
:func:`animation_html` turns frames into a self-contained HTML slider (``to_jshtml``) for the site.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

Tensor = torch.Tensor

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def use_style() -> None:
    """The project's one matplotlib style (call once per notebook)."""
    matplotlib.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "figure.figsize": (6.4, 3.6),
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "font.size": 10, "legend.frameon": False,
        "animation.embed_limit": 40.0,
    })


def _axes(ax, figsize=None):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


# ---------------------------------------------------------------------------------------------------------
# Training curves


def plot_history(history: Sequence[Mapping[str, float]] | object, keys: Iterable[str], *, ax=None,
                 title: str | None = None, logy: bool = False):
    """Curves of history entries (``fit``'s ``FitResult.history`` or a DataFrame) against the epoch."""
    import pandas as pd

    df = history if isinstance(history, pd.DataFrame) else pd.DataFrame(list(history))
    fig, ax = _axes(ax)
    for key in keys:
        if key in df:
            ax.plot(df["epoch"], df[key], marker="o", ms=3, label=key)
    ax.set_xlabel("epoch")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    return fig


def plot_histories(histories: Mapping[str, Sequence[Mapping[str, float]]], key: str, *, ax=None,
                   ylabel: str | None = None, title: str | None = None, colors: Mapping[str, str] | None = None,
                   logy: bool = False):
    """One history entry (e.g. ``val_acc_pct``) against the epoch for several runs ``{label: history}``."""
    fig, ax = _axes(ax)
    for label, history in histories.items():
        pts = [(h["epoch"], h[key]) for h in history if key in h]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=label, color=(colors or {}).get(label))
    ax.set(xlabel="epoch", ylabel=ylabel or key)
    if title:
        ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Metrics against the angle, and angle errors


def shade_angles(ax, intervals_deg: Iterable[tuple[float, float]], *, label: str = "unseen in training",
                 color: str = "0.85") -> None:
    """Shade angle intervals ``[(lo, hi), ...]`` on an angle x-axis (e.g. held-out training angles)."""
    for i, (lo, hi) in enumerate(intervals_deg):
        ax.axvspan(lo, hi, color=color, zorder=0, label=label if i == 0 else None)


def plot_vs_angle(df, *, y: str, hue: str | None = None, x: str = "angle_deg", ax=None, ylabel: str | None = None,
                  shade: Iterable[tuple[float, float]] | None = None, title: str | None = None, ylim=None,
                  colors: Mapping[str, str] | None = None, band: tuple[str, str] | None = None):
    """A metric against the angle, one line per ``hue`` value (``colors`` maps hue values to colours);
    x ticks every 45°. ``band``: the names of two columns holding each point's interval (e.g. from
    :func:`rotcore.metrics.wilson_band`), drawn as a shaded band in the line's colour."""
    fig, ax = _axes(ax, figsize=(7.0, 3.6))
    if shade:
        shade_angles(ax, shade)
    groups = df.groupby(hue, sort=False) if hue else [(None, df)]
    for name, part in groups:
        part = part.sort_values(x)
        (line,) = ax.plot(part[x], part[y], marker="o", ms=3, label=name, color=(colors or {}).get(name))
        if band:
            ax.fill_between(part[x], part[band[0]], part[band[1]], color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xlabel("rotation angle (°)")
    ax.set_ylabel(ylabel or y)
    ax.set_xticks(np.arange(0, 361, 45))
    if ylim:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    if hue or shade:
        ax.legend(fontsize=8, ncols=2)
    return fig


def plot_six_nine(six_nine, *, colors: Mapping[str, str] | None = None, what: str = ""):
    """Two panels from :func:`rotcore.metrics.six_nine_confusion`'s table: the % of 6s read as 9 and of 9s
    read as 6, by angle, one line per model. ``what`` qualifies the digits in the axis labels ("decoded ").
    Where the table has ``<column>_lo`` / ``<column>_hi`` (per-angle intervals), they are drawn as bands."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    for ax, col, lab, title in ((axes[0], "six_as_nine_pct", f"% of {what}6s read as 9", "6 → 9"),
                                (axes[1], "nine_as_six_pct", f"% of {what}9s read as 6", "9 → 6")):
        band = (f"{col}_lo", f"{col}_hi") if f"{col}_lo" in six_nine.columns else None
        plot_vs_angle(six_nine, y=col, hue="model", ax=ax, ylabel=lab, title=title, colors=colors, band=band)
    fig.tight_layout()
    return fig


def plot_error_hist(errors: Mapping[str, Tensor], *, ax=None, bins: int = 36, title: str | None = None,
                    colors: Mapping[str, str] | None = None):
    """Histograms of circular errors in degrees (0–180), one step outline per model ``{label: errors}``."""
    fig, ax = _axes(ax)
    edges = np.linspace(0, 180, bins + 1)
    for label, e in errors.items():
        ax.hist(_np(e).ravel(), bins=edges, histtype="step", lw=1.5, density=True, label=label,
                color=(colors or {}).get(label))
    ax.set(xlabel="circular error (°)", ylabel="density", xlim=(0, 180))
    ax.set_xticks(np.arange(0, 181, 30))
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_error_cdf(errors: Mapping[str, Tensor], *, ax=None, marks_deg: Sequence[float] = (5, 10, 15),
                   title: str | None = None, colors: Mapping[str, str] | None = None, logx: bool = False):
    """Cumulative share (%) of predictions within an error, per model ``{label: errors}``."""
    fig, ax = _axes(ax)
    for label, e in errors.items():
        e = np.sort(_np(e).ravel())
        ax.plot(e, 100 * np.arange(1, len(e) + 1) / len(e), label=label, color=(colors or {}).get(label))
    for m in marks_deg:
        ax.axvline(m, color="0.6", lw=0.8, ls=":")
    ax.set(xlabel="circular error (°)", ylabel="share within (%)", ylim=(0, 101))
    if logx:
        ax.set_xscale("log")
    else:
        ax.set_xlim(0, 180)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_coverage(curves: Mapping[str, object], *, y: str = "mae_deg", ax=None, ylabel: str = "MAE of kept (°)",
                  title: str | None = None, colors: Mapping[str, str] | None = None):
    """Abstention curves: ``y`` against coverage (%) for ``{label: DataFrame}`` from ``metrics.coverage_curve``."""
    fig, ax = _axes(ax)
    for label, df in curves.items():
        ax.plot(df["coverage_pct"], df[y], marker="o", ms=3, label=label, color=(colors or {}).get(label))
    ax.set(xlabel="coverage (% of predictions kept, most confident first)", ylabel=ylabel)
    ax.invert_xaxis()
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Tables as figures: bars, heatmaps, confusion matrices


def plot_bars(values: Mapping[str, float], *, ax=None, ylabel: str = "", errors: Mapping[str, float] | None = None,
              title: str | None = None, fmt: str = "{:.2f}", colors: Mapping[str, str] | None = None):
    """Labelled bars, with optional error bars and a colour per label."""
    fig, ax = _axes(ax)
    names = list(values)
    vals = [values[k] for k in names]
    err = [errors[k] for k in names] if errors else None
    color = [colors.get(k) for k in names] if colors else (PALETTE[: len(names)] if len(names) <= len(PALETTE) else None)
    bars = ax.bar(names, vals, yerr=err, color=color, capsize=3)
    for b, v in zip(bars, vals):
        ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=20)
    if title:
        ax.set_title(title)
    return fig


def plot_grouped_bars(df, *, x: str, hue: str, y: str, ax=None, ylabel: str | None = None,
                      title: str | None = None, logy: bool = False, ylim=None, hline: float | None = None,
                      hline_label: str | None = None, legend_cols: int = 2, colors: Mapping[str, str] | None = None):
    """Bars of ``y`` grouped by ``x`` (in order of appearance), one colour per ``hue`` value (long DataFrame;
    ``colors`` maps hue values to colours, the palette otherwise)."""
    xs = list(dict.fromkeys(df[x]))
    hues = list(dict.fromkeys(df[hue]))
    fig, ax = _axes(ax, figsize=(min(10.0, max(6.4, 0.5 * len(xs) * max(1, len(hues)) ** 0.5)), 3.6))
    width = 0.8 / max(len(hues), 1)
    pos = np.arange(len(xs))
    for i, h in enumerate(hues):
        part = df[df[hue] == h].set_index(x)
        vals = [float(part.loc[v, y]) if v in part.index else np.nan for v in xs]
        ax.bar(pos + (i - (len(hues) - 1) / 2) * width, vals, width, label=str(h),
               color=(colors or {}).get(h, PALETTE[i % len(PALETTE)]))
    if hline is not None:
        ax.axhline(hline, color="0.3", ls="--", lw=1, label=hline_label)
    ax.set_xticks(pos, [str(v) for v in xs])
    ax.set_ylabel(ylabel or y)
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if ylim:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, ncols=legend_cols)
    return fig


def plot_heatmap(values, *, row_labels: Sequence[str], col_labels: Sequence[str], ax=None, title: str | None = None,
                 cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None, fmt: str = "{:.0f}",
                 marked_cols: Sequence[int] = (), xlabel: str | None = None, ylabel: str | None = None,
                 colorbar_label: str | None = None):
    """A labelled heatmap of a 2-D array (e.g. digit × angle), values written in the cells; columns listed
    in ``marked_cols`` get a hatched frame (e.g. angles unseen in training)."""
    m = _np(values).astype(float)
    fig, ax = _axes(ax, figsize=(0.42 * m.shape[1] + 1.6, 0.32 * m.shape[0] + 1.2))
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(m.shape[1]), col_labels, rotation=90, fontsize=7)
    ax.set_yticks(range(m.shape[0]), row_labels, fontsize=7)
    ax.grid(False)
    for j in marked_cols:
        ax.add_patch(matplotlib.patches.Rectangle((j - 0.5, -0.5), 1, m.shape[0], fill=False, hatch="///",
                                                  edgecolor="0.6", lw=0))
    lo, hi = np.nanmin(m), np.nanmax(m)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if np.isfinite(m[i, j]):
                dark = (m[i, j] - lo) / max(hi - lo, 1e-12) < 0.5 if cmap == "viridis" else False
                ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=5.5,
                        color="white" if dark else "black")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if colorbar_label:
        cb.set_label(colorbar_label)
    return fig


def plot_confusion(cm: Tensor | np.ndarray, *, ax=None, labels: Sequence[str] | None = None,
                   normalize: bool = True, title: str | None = None):
    """A confusion matrix (rows true, columns predicted), row-normalised to percent by default."""
    m = _np(cm).astype(float)
    if normalize:
        m = 100 * m / np.clip(m.sum(1, keepdims=True), 1, None)
    fig, ax = _axes(ax, figsize=(4.2, 3.8))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=100 if normalize else None)
    k = m.shape[0]
    labels = labels or [str(i) for i in range(k)]
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.grid(False)
    for i in range(k):
        for j in range(k):
            if m[i, j] >= 0.5:
                ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if m[i, j] > 60 else "black")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Images, codes and animations


def image_grid(x: Tensor, *, nrow: int | None = None, ax=None, titles: Sequence[str] | None = None,
               row_labels: Sequence[str] | None = None, cmap: str = "gray", scale: float = 0.9):
    """Images ``(N, C, H, W)`` in [0, 1] on a grid of ``nrow`` rows (one axis per image)."""
    x = _np(x)
    n = len(x)
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    ncol = int(np.ceil(n / nrow))
    if ax is not None:
        fig = ax.figure
        ax.remove()
    fig = plt.figure(figsize=(scale * ncol, scale * nrow)) if ax is None else fig
    for i in range(n):
        a = fig.add_subplot(nrow, ncol, i + 1)
        img = x[i].transpose(1, 2, 0)
        a.imshow(img[..., 0] if img.shape[-1] == 1 else np.clip(img, 0, 1), cmap=cmap, vmin=0, vmax=1)
        a.set_xticks([])
        a.set_yticks([])
        a.grid(False)
        for s in a.spines.values():
            s.set_visible(False)
        if titles is not None and i < len(titles):
            a.set_title(titles[i], fontsize=7)
        if row_labels is not None and i % ncol == 0 and i // ncol < len(row_labels):
            a.set_ylabel(row_labels[i // ncol], fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.3)
    return fig


def cam_grid(x: Tensor, cams: Tensor, *, titles: Sequence[str] | None = None, ncol: int = 6, alpha: float = 0.45,
             scale: float = 1.6):
    """Images ``(N, 3, H, W)`` with their Grad-CAM maps ``(N, H, W)`` (in [0, 1]) overlaid in a jet colormap."""
    imgs, maps = _np(x), _np(cams)
    n = len(imgs)
    ncol = min(ncol, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(scale * ncol, scale * nrow + 0.3), squeeze=False)
    for i, a in enumerate(axes.ravel()):
        a.axis("off")
        if i >= n:
            continue
        a.imshow(np.clip(imgs[i].transpose(1, 2, 0), 0, 1))
        a.imshow(maps[i], cmap="jet", alpha=alpha, vmin=0, vmax=1)
        if titles is not None and i < len(titles):
            a.set_title(titles[i], fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.35)
    return fig


def plot_latent_2d(z: Tensor | np.ndarray, y: Tensor | np.ndarray, *, ax=None, title: str | None = None,
                   s: float = 2.0, unit_circle: bool = False):
    """Two-dimensional codes ``(N, 2)`` coloured by label ``(N,)`` (e.g. digits); ``unit_circle`` draws S¹."""
    z, y = _np(z), _np(y)
    fig, ax = _axes(ax, figsize=(4.0, 4.0))
    cmap = plt.get_cmap("tab10")
    for c in np.unique(y):
        m = y == c
        ax.scatter(z[m, 0], z[m, 1], s=s, color=cmap(int(c) % 10), label=str(int(c)), alpha=0.6, linewidths=0)
    if unit_circle:
        t = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(t), np.sin(t), color="0.6", lw=0.8, zorder=0)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, markerscale=3, ncols=2, loc="upper right", handletextpad=0.1)


def animation_html(frames: Tensor, *, titles: Sequence[str] | None = None, interval_ms: int = 120,
                   scale: float = 2.2, cmap: str = "gray") -> str:
    """Frames ``(T, N, C, H, W)`` (N images side by side per frame) as a self-contained HTML slider.

    Uses matplotlib's ``to_jshtml``: it plays on the static site without a kernel or a CDN.
    """
    from matplotlib import animation

    f = _np(frames)
    if f.ndim == 4:
        f = f[:, None]
    t, n = f.shape[:2]
    fig, axes = plt.subplots(1, n, figsize=(scale * n, scale), squeeze=False)
    ims = []
    for j, a in enumerate(axes[0]):
        img = f[0, j].transpose(1, 2, 0)
        ims.append(a.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap=cmap, vmin=0, vmax=1))
        a.axis("off")
    title = fig.suptitle(titles[0] if titles else "", fontsize=9)

    def update(i):
        for j, im in enumerate(ims):
            img = f[i, j].transpose(1, 2, 0)
            im.set_data(img[..., 0] if img.shape[-1] == 1 else img)
        if titles:
            title.set_text(titles[i])
        return ims

    anim = animation.FuncAnimation(fig, update, frames=t, interval=interval_ms, blit=False)
    html = anim.to_jshtml(default_mode="loop")
    plt.close(fig)
    return html
