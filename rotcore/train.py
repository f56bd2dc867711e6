"""THE training loop: :func:`fit`, plus batched inference (:func:`predict`) and a device-resident loader.

``fit`` owns everything that should not be written twice: seeding, the optimiser and LR schedule from a
frozen :class:`FitConfig`, bf16 autocast on CUDA, optional ``torch.compile``, gradient clipping, a tqdm
progress bar, per-epoch validation, early stopping with best-weight restore, a history, and checkpoints
that resume. A checkpoint stores the full config (fit settings + the caller's run config); one written
with another config is refused with the differences listed, never silently reused. A finished checkpoint
makes ``fit`` a cache: it loads and returns without training.

What a study supplies is small: a ``loss_fn(model, batch) -> loss`` (or ``(loss, {name: value})``), an
iterable of batches (usually :class:`TensorLoader`), and optionally ``validate(model) -> {name: value}``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rotcore import config as _config
from rotcore.config import ConfigError, check_choice, check_positive

Tensor = torch.Tensor

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "step", "exponential", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
CHECKPOINT_FORMAT = 1


class CheckpointMismatchError(RuntimeError):
    """A checkpoint exists for this path but was written with a different config."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How to train (not what): optimiser, schedule, precision, stopping.

    The schedule is one function of the optimiser step (:func:`lr_at`), stepped after every optimiser step:
    a linear warm-up over the first ``warmup_steps`` steps (or ``warmup_fraction`` of all steps), then
    ``lr_schedule``: ``constant``; ``step`` (× ``lr_gamma`` every ``lr_step_epochs`` epochs, counted in
    steps); ``exponential`` (× ``lr_gamma`` per epoch after the first ``lr_step_epochs``, continuous in the
    step); ``cosine`` (from ``lr`` to ``lr_final``, reached at the last step).
    ``precision="auto"`` means bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16 / AMX; about
    1.7x faster training there, see ``benchmarks/``), fp32 elsewhere. ``memory_format="auto"`` puts models
    that contain ``nn.Conv2d`` in channels_last (another ~1.3x on CPU for plain conv nets; escnn's R2Conv
    builds its filters each step and gains nothing). Early stopping watches
    ``monitor`` (a key returned by ``validate``) and is off when ``early_stopping_patience`` is ``None``.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    lr_schedule: str = "constant"
    lr_step_epochs: int = 10
    lr_gamma: float = 0.1
    lr_final: float = 0.0
    warmup_steps: int = 0
    warmup_fraction: float = 0.0
    grad_clip: float | None = None
    precision: str = "auto"
    memory_format: str = "auto"
    compile: bool = False
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    monitor: str | None = None
    monitor_mode: str = "min"
    restore_best: bool = True
    seed: int = 0

    def __post_init__(self):
        check_positive("epochs", self.epochs, allow_zero=True)
        check_positive("batch_size", self.batch_size)
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("lr_step_epochs", self.lr_step_epochs, allow_zero=True)
        check_positive("lr_gamma", self.lr_gamma)
        check_positive("lr_final", self.lr_final, allow_zero=True)
        check_positive("warmup_steps", self.warmup_steps, allow_zero=True)
        check_positive("warmup_fraction", self.warmup_fraction, allow_zero=True)
        if self.warmup_fraction >= 1:
            raise ConfigError(f"warmup_fraction must be < 1 (a share of all steps), got {self.warmup_fraction!r}")
        if self.warmup_steps and self.warmup_fraction:
            raise ConfigError("give the warm-up as warmup_steps or as warmup_fraction, not both")
        if self.lr_final > self.lr:
            raise ConfigError(f"lr_final={self.lr_final!r} is above lr={self.lr!r}; the schedule only decays")
        if self.lr_final and self.lr_schedule != "cosine":
            raise ConfigError(f"lr_final is the end point of the cosine schedule; lr_schedule={self.lr_schedule!r} "
                              "does not use it")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("memory_format", self.memory_format, MEMORY_FORMATS)
        check_choice("monitor_mode", self.monitor_mode, ("min", "max"))
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
        if self.early_stopping_patience is not None:
            check_positive("early_stopping_patience", self.early_stopping_patience)
            if self.monitor is None:
                raise ConfigError("early stopping needs `monitor`, a key returned by validate()")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int):
            raise ConfigError(f"epochs must be an integer, got {self.epochs!r}")


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns. ``history`` has one dict per epoch (``epoch`` counts from 1)."""

    history: list[dict[str, float]]
    best_epoch: int | None
    best_metric: float | None
    stopped_early: bool
    resumed_from_epoch: int
    train_time_s: float
    checkpoint: Path | None

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.history)


# ---------------------------------------------------------------------------------------------------------
# Devices, seeds, precision


def default_device() -> torch.device:
    """``cuda`` if present, else ``mps``, else ``cpu``; ``ROTBOOK_DEVICE`` overrides."""
    env = os.environ.get("ROTBOOK_DEVICE")
    if env:
        return torch.device(env)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def state_dicts_equal(a: nn.Module, b: nn.Module) -> bool:
    """Same keys and bit-identical tensors (compared on the CPU): the project's one weight comparison."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: torch.device, precision: str) -> str:
    """``"bf16"`` or ``"fp32"``: what ``precision="auto"`` means on ``device``."""
    if precision != "auto":
        return precision
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use_channels_last(model: nn.Module, memory_format: str) -> bool:
    """Whether :func:`fit` puts ``model`` in channels_last (``"auto"``: when it has plain 2-D convolutions)."""
    if memory_format != "auto":
        return memory_format == "channels_last"
    # channels_last is defined for 4-D tensors only: a model holding 5-D weights (escnn-style) stays contiguous
    return any(isinstance(m, nn.Conv2d) for m in model.modules()) and all(p.dim() <= 4 for p in model.parameters())


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------------------
# Memory: the largest batch that fits the device


def is_out_of_memory(err: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors (``torch.cuda.OutOfMemoryError`` or the plain RuntimeError)."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def probe_batch_size(try_step: Callable[[int], Any], start: int, *, min_size: int = 1,
                     log: Callable[[str], Any] | None = None) -> int:
    """The largest of ``start, start/2, start/4, ...`` for which ``try_step(batch_size)`` runs without
    running out of memory (e.g. one forward + backward of the real model at that batch size).

    Other errors propagate. Raises ``RuntimeError`` when even ``min_size`` does not fit. The CUDA cache is
    emptied after each failure. Not guaranteed: a size that fits one step can still fail later if memory
    use grows (fragmentation, evaluation at a larger size).
    """
    check_positive("start", start)
    size = int(start)
    while size >= min_size:
        try:
            try_step(size)
            return size
        except Exception as err:  # noqa: BLE001 - only OOM is handled, everything else is re-raised
            if not is_out_of_memory(err):
                raise
            if log is not None:
                log(f"batch size {size} ran out of memory; trying {size // 2}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size //= 2
    raise RuntimeError(f"not even batch size {min_size} fits in memory")


# ---------------------------------------------------------------------------------------------------------
# Data on the device


class TensorLoader:
    """Shuffled mini-batches of tensors that already live on the training device.

    No workers, no per-sample Python: one ``randperm`` per epoch and index gathers. Its shuffling generator
    is part of the checkpoint (``state_dict``), so a resumed run sees the same batches.
    """

    def __init__(self, *tensors: Tensor, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0):
        if not tensors:
            raise ValueError("TensorLoader needs at least one tensor")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError("all tensors must have the same first dimension")
        check_positive("batch_size", batch_size)
        self.tensors, self.batch_size, self.shuffle, self.drop_last = tensors, batch_size, shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.tensors[0])
        device = self.tensors[0].device
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield tuple(t[idx] for t in self.tensors)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, *, batch_size: int = 1024, device: torch.device | str | None = None,
            precision: str = "fp32", fn: Callable[[nn.Module, Tensor], Tensor] | None = None) -> Tensor:
    """Run ``model`` (or ``fn(model, batch)``) over ``x`` in eval mode, in batches; outputs concatenated.

    The model is put in eval mode and restored afterwards. Outputs are float32 on ``device``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device, non_blocking=True)
            with autocast(device, precision):
                out = fn(model, xb) if fn is not None else model(xb)
            outs.append(out.float())
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0, device=device)


# ---------------------------------------------------------------------------------------------------------
# Optimiser and schedule


def build_optimizer(params, cfg: FitConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def warmup_steps(cfg: FitConfig, total_steps: int) -> int:
    """Number of warm-up steps of ``cfg`` in a run of ``total_steps`` optimiser steps."""
    if cfg.warmup_fraction:
        return int(round(cfg.warmup_fraction * total_steps))
    return min(int(cfg.warmup_steps), max(total_steps - 1, 0))


def lr_at(cfg: FitConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of a run of ``cfg.epochs`` epochs of
    ``steps_per_epoch`` steps: linear warm-up to ``cfg.lr`` (step ``i`` of ``W`` uses ``lr·(i+1)/W``), then the
    schedule over the remaining steps. The cosine reaches ``cfg.lr_final`` exactly at the last step."""
    total = max(cfg.epochs * steps_per_epoch, 1)
    warm = warmup_steps(cfg, total)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    epoch = step / max(steps_per_epoch, 1)  # fractional epoch: the schedules below move every step
    if cfg.lr_schedule == "step":
        return cfg.lr * cfg.lr_gamma ** (int(epoch) // max(cfg.lr_step_epochs, 1))
    if cfg.lr_schedule == "exponential":
        return cfg.lr * cfg.lr_gamma ** max(0.0, epoch - cfg.lr_step_epochs)
    if cfg.lr_schedule == "cosine":
        span = total - 1 - warm
        progress = min(1.0, (step - warm) / span) if span > 0 else 1.0
        return cfg.lr_final + (cfg.lr - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr


def lr_schedule(cfg: FitConfig, steps_per_epoch: int, n: int | None = None) -> list[float]:
    """The learning rate of each of the first ``n`` optimiser steps (default: all of them)."""
    n = cfg.epochs * steps_per_epoch if n is None else n
    return [lr_at(cfg, i, steps_per_epoch) for i in range(n)]


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def expected_config(cfg: FitConfig, run_config: Any) -> dict[str, Any]:
    return {"fit": _config.to_dict(cfg), "run": _config.to_dict(run_config)}


def load_checkpoint(path: str | Path, *, expect: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint; with ``expect``, refuse one whose stored config differs."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(f"{path}: unknown checkpoint format {ckpt.get('format')!r}")
    if expect is not None and ckpt["config"] != _config.to_dict(expect):
        changes = _config.diff(ckpt["config"], _config.to_dict(expect))
        raise CheckpointMismatchError(
            f"checkpoint {path} was written with another config; refusing to reuse it.\n  "
            + "\n  ".join(changes[:20])
            + "\nDelete it, or give this run its own checkpoint path (run_dir() does that from the config)."
        )
    return ckpt


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def code_fingerprint() -> str:
    """A hash of the ``rotcore`` package's source files (``*.py``, by path and content).

    Part of every :func:`run_dir`: a checkpoint is reused (resumed, or returned as a finished cache) only by the
    code that wrote it. Without it, a run after a code change could silently resume or reuse weights trained by
    older code under an unchanged config, and two runs "of the same commit" would differ.
    """
    import hashlib

    pkg = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def run_dir(study: str, name: str, run_config: Any, *, root: Path | None = None) -> Path:
    """``runs/<study>/<name>-<hash>``: a folder per distinct config and ``rotcore`` source
    (:func:`code_fingerprint`), so changed configs never collide and changed code never reuses old weights."""
    from rotcore import paths

    key = _config.config_hash({"run": _config.to_dict(run_config), "code": code_fingerprint()})
    return (root or paths.runs_root()) / study / f"{name}-{key}"


# ---------------------------------------------------------------------------------------------------------
# The loop


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return os.environ.get("ROTBOOK_PROGRESS", "1") != "0"


def _split_loss(out) -> tuple[Tensor, Mapping[str, Any]]:
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, {}


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Tensor | tuple[Tensor, Mapping[str, Any]]],
    train_loader: Iterable,
    *,
    config: FitConfig,
    validate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    checkpoint: str | Path | None = None,
    run_config: Any = None,
    device: torch.device | str | None = None,
    parameters: Iterable[nn.Parameter] | None = None,
    progress: bool | None = None,
    desc: str = "fit",
) -> FitResult:
    """Train ``model`` in place and return its :class:`FitResult`.

    Args:
        model: moved to ``device`` (default :func:`default_device`).
        loss_fn: ``loss_fn(model, batch)`` returning a scalar loss, or ``(loss, {name: value})`` whose
            values are averaged per epoch into the history as ``train_<name>``.
        train_loader: re-iterable batches; if it has ``state_dict``/``load_state_dict`` (like
            :class:`TensorLoader`) its state is checkpointed for exact resumption.
        config: the :class:`FitConfig`.
        validate: called after each epoch in eval mode under ``no_grad``; returns metrics for the history
            and for ``config.monitor``.
        checkpoint: file to resume from and write to after every epoch (atomically). ``None``: no files.
        run_config: the caller's own config (model, data); stored with the checkpoint and compared.
        parameters: what to optimise (default: all of ``model``'s parameters).

    Resuming restores model, optimiser, schedule, RNG and loader state, so an interrupted run finishes with
    the same weights as an uninterrupted one (up to nondeterministic GPU kernels).
    """
    device = torch.device(device) if device is not None else default_device()
    cfg = config
    if device.type == "cpu":
        # deterministic kernels where torch has a choice (a warning, not an error, where it has none); with the
        # seeded RNG, loader and schedule, two runs of one config in fresh processes give identical weights
        torch.use_deterministic_algorithms(True, warn_only=True)
    model.to(device)
    if use_channels_last(model, cfg.memory_format):
        # parameters only: convolutions then compute in channels_last whatever the input's layout
        model.to(memory_format=torch.channels_last)
    params = list(parameters) if parameters is not None else [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg)
    if not hasattr(train_loader, "__len__"):
        raise TypeError(f"{desc}: the training loader has no len(); fit's schedule is a function of the step "
                        "and needs the number of batches per epoch")
    steps_per_epoch = len(train_loader)
    # stepped after every optimiser step; its position (last_epoch = steps taken) is part of the checkpoint
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_at(cfg, i, steps_per_epoch) / cfg.lr)
    expect = expected_config(cfg, run_config)
    ckpt_path = Path(checkpoint) if checkpoint is not None else None

    history: list[dict[str, float]] = []
    start_epoch, best_metric, best_epoch, best_state, bad_epochs, done, stopped = 0, None, None, None, 0, False, False
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, expect=expect)
        model.train()  # state dicts are saved and loaded in train mode (escnn's keys depend on the mode)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("loader") is not None and hasattr(train_loader, "load_state_dict"):
            train_loader.load_state_dict(ckpt["loader"])
        _set_rng_state(ckpt["rng"])
        history = list(ckpt["history"])
        start_epoch, done, stopped = ckpt["epoch"], ckpt["done"], ckpt["stopped_early"]
        best_metric, best_epoch, best_state = ckpt["best_metric"], ckpt["best_epoch"], ckpt["best_state"]
        bad_epochs = ckpt["bad_epochs"]
    else:
        seed_everything(cfg.seed)
    resumed_from = start_epoch

    def finish() -> FitResult:
        if best_state is not None and cfg.restore_best:
            model.train()
            model.load_state_dict(best_state)
        model.eval()
        return FitResult(history, best_epoch, best_metric, stopped, resumed_from,
                         sum(h.get("epoch_time_s", 0.0) for h in history), ckpt_path)

    if done or start_epoch >= cfg.epochs:
        return finish()

    train_model = torch.compile(model) if cfg.compile else model
    show = _progress_enabled(progress)
    from tqdm.auto import tqdm

    epochs_bar = tqdm(range(start_epoch, cfg.epochs), desc=desc, initial=start_epoch, total=cfg.epochs,
                      disable=not show, leave=True)
    sign = 1.0 if cfg.monitor_mode == "min" else -1.0
    for epoch in epochs_bar:
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        log_sums: dict[str, Tensor] = {}
        nonfinite = torch.zeros((), device=device, dtype=torch.bool)
        n_batches = n_images = 0
        lr_first = optimizer.param_groups[0]["lr"]
        batches = tqdm(train_loader, desc=f"epoch {epoch + 1}", leave=False, disable=not show,
                       total=len(train_loader) if hasattr(train_loader, "__len__") else None)
        for batch in batches:
            with autocast(device, cfg.precision):
                loss, logs = _split_loss(loss_fn(train_model, batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            detached = loss.detach()
            nonfinite |= ~torch.isfinite(detached)
            loss_sum += detached.double()
            for k, v in logs.items():
                log_sums[k] = log_sums.get(k, 0.0) + (v.detach().double() if torch.is_tensor(v) else float(v))
            n_batches += 1
            first = batch[0] if isinstance(batch, (tuple, list)) else batch
            n_images += len(first) if hasattr(first, "__len__") else 0
            if n_batches % 50 == 0:
                if bool(nonfinite):
                    raise NonFiniteLossError(
                        f"{desc}: non-finite loss in epoch {epoch + 1} (batches {n_batches - 49}-{n_batches}); "
                        "lower the learning rate, enable grad_clip, or check the loss for log(0) / division by 0")
                batches.set_postfix(loss=f"{float(loss_sum) / n_batches:.4g}")
        if n_batches == 0:
            raise RuntimeError(f"{desc}: the training loader yielded no batches")
        if bool(nonfinite):
            raise NonFiniteLossError(
                f"{desc}: non-finite loss in epoch {epoch + 1}; lower the learning rate, enable grad_clip, "
                "or check the loss for log(0) / division by 0")
        lr_now = optimizer.param_groups[0]["lr"]  # the rate the next step will use
        train_time = time.perf_counter() - t0
        row: dict[str, float] = {"epoch": epoch + 1, "train_loss": float(loss_sum) / n_batches}
        row.update({f"train_{k}": float(v) / n_batches for k, v in log_sums.items()})
        if validate is not None:
            model.eval()
            with torch.no_grad():
                row.update({k: float(v) for k, v in validate(model).items()})
            model.train()
        row.update({"lr": lr_first, "lr_end": lr_now, "epoch_time_s": train_time,
                    "images_per_s": n_images / train_time if train_time > 0 else float("nan")})
        history.append(row)
        epochs_bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("train_loss", cfg.monitor)})

        if cfg.monitor is not None:
            if cfg.monitor not in row:
                raise KeyError(f"monitor={cfg.monitor!r} is not among the logged metrics: {sorted(row)}")
            value = row[cfg.monitor]
            if best_metric is None or sign * (best_metric - value) > cfg.early_stopping_min_delta:
                best_metric, best_epoch, bad_epochs = value, epoch + 1, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            if cfg.early_stopping_patience is not None and bad_epochs >= cfg.early_stopping_patience:
                stopped = True
        done = stopped or epoch + 1 >= cfg.epochs
        if ckpt_path is not None:
            _save_atomic({
                "format": CHECKPOINT_FORMAT, "config": expect, "config_hash": _config.config_hash(expect),
                "epoch": epoch + 1, "done": done, "stopped_early": stopped,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                "loader": train_loader.state_dict() if hasattr(train_loader, "state_dict") else None,
                "history": history, "best_metric": best_metric, "best_epoch": best_epoch,
                "best_state": best_state, "bad_epochs": bad_epochs,
            }, ckpt_path)
        if stopped:
            break
    epochs_bar.close()
    return finish()


# ---------------------------------------------------------------------------------------------------------
# Cost: training FLOPs, counted


class _TotalsOnly:
    """Stands in for ``FlopCounterMode``'s module tracker: every FLOP is counted under "Global" only. The
    tracker's per-module bookkeeping hashes every module it meets, and escnn's basis modules compare whole
    bases when hashed (minutes instead of seconds)."""

    parents = frozenset({"Global"})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def flop_counter():
    """``torch.utils.flop_counter.FlopCounterMode`` that counts totals only (same totals, much faster on escnn
    models). Use as ``with flop_counter() as fc: ...; fc.get_total_flops()``."""
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    fc.mod_tracker = _TotalsOnly()
    return fc


def step_flops(model: nn.Module, loss: Callable[[nn.Module, Any], Tensor],
               make_batch: Callable[[int], Any]) -> tuple[float, float]:
    """FLOPs of one training step (forward + backward of ``loss(model, make_batch(b))``) as
    ``(per_image, per_step)``, counted at batch sizes 2 and 4: the difference is the cost per image, the rest
    what a step costs whatever its batch (an escnn layer expands its filters from the basis once per step).
    Only what the counter counts (convolutions, matmuls): not norms, elementwise ops or the optimiser."""
    counts = []
    for b in (2, 4):
        model.zero_grad(set_to_none=True)
        with flop_counter() as fc:
            loss(model, make_batch(b)).backward()
        counts.append(float(fc.get_total_flops()))
    model.zero_grad(set_to_none=True)
    per_image = (counts[1] - counts[0]) / 2
    return per_image, max(0.0, counts[0] - 2 * per_image)


def images_seen(n: int, fit_cfg: FitConfig) -> tuple[int, int]:
    """Images seen and steps taken by :func:`fit` over ``n`` training images with ``drop_last`` batches."""
    steps = (n // fit_cfg.batch_size) * fit_cfg.epochs
    return steps * fit_cfg.batch_size, steps

