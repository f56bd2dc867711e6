"""Frozen dataclass configs, named profiles, validated overrides and config hashes.

A study defines one frozen dataclass (which may nest others, e.g. a :class:`rotcore.train.FitConfig`) and a
``PROFILES`` mapping ``{"smoke": ..., "cpu": ..., "gpu": ...}``. Profiles change sizes and epochs, never code
paths. :func:`resolve` picks a profile and applies overrides given as ``{"fit.epochs": 3}``; every mistake
(unknown profile, unknown key, wrong type, a value the config's own ``__post_init__`` rejects) raises
:class:`ConfigError` *before* any work starts, with the valid choices in the message.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from rotcore.paths import PROFILES

C = TypeVar("C")


class ConfigError(ValueError):
    """A bad profile name, override key or parameter value."""


# ---------------------------------------------------------------------------------------------------------
# Checks used by configs' __post_init__


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


def check_profile(name: str, value: Any) -> None:
    """``value`` must name a profile (:data:`rotcore.paths.PROFILES`: smoke, cpu, gpu), e.g. a judge's profile."""
    check_choice(name, value, PROFILES)


def check_angles(name: str, angles_deg: Iterable[float], *, allow_empty: bool = False) -> None:
    """Angles in degrees must be finite numbers in [0, 360), without duplicates."""
    angles = tuple(angles_deg)
    if not angles and not allow_empty:
        raise ConfigError(f"{name} must contain at least one angle in [0, 360)")
    for a in angles:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
            raise ConfigError(f"{name}: {a!r} is not a finite number of degrees")
        if not 0 <= a < 360:
            raise ConfigError(f"{name}: {a!r} is out of range; angles are degrees in [0, 360)")
    if len(set(angles)) != len(angles):
        raise ConfigError(f"{name} has duplicate angles: {angles}")


def check_angle_intervals(name: str, intervals_deg: Any) -> tuple[tuple[float, float], ...]:
    """Validate a set of angles given as intervals ``((lo, hi), ...)`` in degrees and return it normalised
    (a sorted tuple of float pairs).

    Each interval is ``0 <= lo < hi <= 360`` (``hi = 360`` closes the circle; a band through 0° is two
    intervals, e.g. ``((0, 30), (330, 360))``); intervals may touch but not overlap; the set is not empty.
    Lists (from YAML / papermill) are accepted. Every violation raises :class:`ConfigError` naming it.
    """
    example = "e.g. ((0, 30), (90, 120), (270, 360))"
    if isinstance(intervals_deg, (str, bytes)) or not isinstance(intervals_deg, Iterable):
        raise ConfigError(f"{name} must be a sequence of (lo, hi) degree intervals, {example}; got {intervals_deg!r}")
    items = list(intervals_deg)
    if not items:
        raise ConfigError(f"{name} is empty: give at least one (lo, hi) interval of angles, {example}")
    out = []
    for item in items:
        if isinstance(item, (str, bytes)) or not isinstance(item, Iterable) or len(tuple(item)) != 2:
            raise ConfigError(f"{name}: {item!r} is not a (lo, hi) pair of degrees ({example})")
        lo, hi = tuple(item)
        for v in (lo, hi):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{name}: {item!r} holds {v!r}, not a finite number of degrees")
        if not 0 <= lo < 360 or not 0 < hi <= 360:
            raise ConfigError(f"{name}: {item!r} is out of range; use 0 <= lo < hi <= 360 (split a band "
                              "through 0° into two intervals, e.g. (330, 360) and (0, 30))")
        if lo >= hi:
            raise ConfigError(f"{name}: {item!r} is empty or reversed; each interval needs lo < hi")
        out.append((float(lo), float(hi)))
    out.sort()
    for (lo1, hi1), (lo2, hi2) in zip(out, out[1:]):
        if lo2 < hi1:
            raise ConfigError(f"{name}: intervals {(lo1, hi1)} and {(lo2, hi2)} overlap; merge them into one")
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------
# Serialisation and hashing


def to_dict(cfg: Any) -> Any:
    """A JSON-ready view of a (possibly nested) dataclass config: tuples become lists."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    return cfg


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a (possibly nested) frozen dataclass config from its :func:`to_dict` view (e.g. the config a
    checkpoint stored): nested dataclasses are rebuilt, lists become tuples again, ``__post_init__`` runs.
    Unknown keys raise :class:`ConfigError`; missing keys take the field's default.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; valid keys: {', '.join(sorted(names))}")

    def rebuild(tp: Any, value: Any) -> Any:
        candidates = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_args(tp) else [tp]
        for t in candidates:
            if dataclasses.is_dataclass(t) and isinstance(value, Mapping):
                return from_dict(t, value)
        if isinstance(value, list):
            return tuple(rebuild(Any, v) for v in value)
        return value

    return cls(**{k: rebuild(hints.get(k, Any), v) for k, v in data.items()})


def config_hash(cfg: Any, length: int = 8) -> str:
    """Stable short hash of a config's content (used in run names and checkpoint checks)."""
    blob = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    """All overridable keys of a config, nested ones dotted (``fit.epochs``)."""
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += flat_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two ``to_dict`` views (for refused checkpoints)."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} != {vb!r}")
    return out


# ---------------------------------------------------------------------------------------------------------
# Overrides


def _coerce(key: str, value: Any, current: Any, annotation: Any) -> Any:
    """Bring an override to the field's type; reject what clearly does not fit."""
    if isinstance(current, bool) or annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} expects true/false, got {value!r}")
    if isinstance(current, tuple):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        if isinstance(value, (int, float)):
            return (value,)
        raise ConfigError(f"{key} expects a list, got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if value is None and _allows_none(annotation):
            return None
        raise ConfigError(f"{key} expects an integer, got {value!r}")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if value is None and _allows_none(annotation):
            return None
        raise ConfigError(f"{key} expects a number, got {value!r}")
    if isinstance(current, str) and not isinstance(value, str):
        raise ConfigError(f"{key} expects a string, got {value!r}")
    return value


def _allows_none(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return "None" in annotation or "Optional" in annotation
    args = typing.get_args(annotation)
    return type(None) in args or annotation is None or isinstance(annotation, types.NoneType)


def override(cfg: C, overrides: Mapping[str, Any] | None) -> C:
    """Return ``cfg`` with dotted-key overrides applied; the result re-runs all ``__post_init__`` checks."""
    if not overrides:
        return cfg
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"overrides must be a mapping of key -> value, got {type(overrides).__name__}")
    valid = flat_keys(cfg)
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for key, value in overrides.items():
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"unknown override key {key!r} for {type(cfg).__name__}{hint}; valid keys: {', '.join(valid)}"
            )
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = _coerce(key, value, getattr(cfg, head), fields[head].type)
    for head, sub in nested.items():
        direct[head] = override(getattr(cfg, head), sub)
    try:
        return dataclasses.replace(cfg, **direct)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid override for {type(cfg).__name__}: {err}") from err


def resolve(profiles: Mapping[str, C], profile: str, overrides: Mapping[str, Any] | None = None) -> C:
    """Pick ``profiles[profile]`` and apply ``overrides``; raise :class:`ConfigError` on any mistake."""
    if profile == "full" and "full" not in profiles:
        raise ConfigError("the `full` profile was split in two: use `cpu` (the published numbers, sized for 2 CPU "
                          "cores, <= 25 min per study) or `gpu` (the anchors' scale, for one GPU or Colab)")
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles)}")
    return override(profiles[profile], overrides)
