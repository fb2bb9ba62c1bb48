"""Settings compared across runs: what changed between the settings a folder was made with and the
ones asked for now (named in refusals, resumes and recipe reruns)."""

from __future__ import annotations

import json
from typing import Any


def plain(value: Any) -> Any:
    """``value`` as JSON would store it (tuples → lists, paths → strings): settings compare alike
    whether they come from a config, a checkpoint or a state file."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def changed_settings(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """The settings that differ between two (nested) mappings: ``[("train.epochs", 200, 300), …]``."""
    out: list[tuple[str, Any, Any]] = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(changed_settings(a, b, f"{prefix}{k}."))
        elif a != b:
            out.append((f"{prefix}{k}", a, b))
    return out


def format_change(key: str, old: Any, new: Any) -> str:
    """``epochs: 200 → 300``."""
    return f"{key}: {old!r} → {new!r}"
