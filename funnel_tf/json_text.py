"""JSON text as every reader accepts it: no bare NaN / Infinity (not JSON; `jq`, browsers and
most parsers refuse them). The one helper for every JSON file or line funnel_tf writes."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """`obj` with every non-finite float (NaN, +-inf; numpy scalars too) replaced by None, so it
    reads as null: "no value" (an ETA not known yet, a metric undefined on this data)."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float) or hasattr(obj, "dtype") and getattr(obj, "shape", None) == ():
        try:
            value = float(obj)
        except (TypeError, ValueError):
            return obj
        if isinstance(obj, float) or getattr(obj.dtype, "kind", "") == "f":
            return value if math.isfinite(value) else None
        return obj.item() if hasattr(obj, "item") else obj
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """json.dumps of `finite(obj)`; a non-finite number that still slips through (e.g. inside an
    object a `default=` hook returns) raises instead of writing invalid JSON."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)


__all__ = ["finite", "dumps"]
