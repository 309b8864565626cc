"""Config files: read JSON, merge it into the defaults (unknown keys and wrong types are errors), and compare
two runs' settings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from alias_opt.config.search import SearchConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # the shipped configs (also ./configs in the repository)


def _merge(obj: Any, data: dict[str, Any], where: str) -> Any:
    hints = get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    for key, value in data.items():
        if key.startswith("_"):  # "_comment" keys document a file
            continue
        if key not in names:
            raise ValueError(f"unknown config key {where}{key!r}; known: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config key {where}{key} must be an object")
            _merge(current, value, f"{where}{key}.")
        else:
            setattr(obj, key, _typed(hints[key], value, f"{where}{key}"))
    return obj


def _typed(kind: Any, value: Any, where: str) -> Any:
    """``value`` checked against a bool / int / float field (an int is a valid float)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is bool and not isinstance(value, bool):
        raise ValueError(f"config key {where} must be true or false; got {value!r}")
    if kind is int and not (number and value == int(value)):
        raise ValueError(f"config key {where} must be an integer; got {value!r}")
    if kind is float and not number:
        raise ValueError(f"config key {where} must be a number; got {value!r}")
    return int(value) if kind is int else float(value) if kind is float else value


def read_config_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in a config file, or a FileNotFoundError / ValueError that names the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a JSON object, not {type(data).__name__}")
    return data


def deep_merge(a: dict, b: dict) -> dict:
    """``a`` updated by ``b``, nested objects merged key by key."""
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """The one config loader (``main.py``, the comparison, tuning): the defaults, then the JSON file at
    ``path`` (if any), then ``overrides`` (nested dicts in the same layout). Unknown keys are errors."""
    cfg = SearchConfig()
    if path is not None:
        _merge(cfg, read_config_json(path), "")
    if overrides:
        _merge(cfg, overrides, "")
    return cfg.validate()


def _flat(d: Mapping, prefix: str = "") -> dict[str, object]:
    """A nested dict as one level of dotted keys."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def setting_differences(there: Mapping, now: Mapping, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested settings dicts (a finished run's and this
    one's), one ``<prefix>key: X there, Y now`` each; ``(unset)`` where a side lacks the key."""
    a, b = _flat(there), _flat(now)
    missing = object()

    def show(v) -> str:
        return "(unset)" if v is missing else repr(v)

    return [
        f"{prefix}{k}: {show(a.get(k, missing))} there, {show(b.get(k, missing))} now"
        for k in sorted(set(a) | set(b))
        if a.get(k, missing) != b.get(k, missing)
    ]
