"""What user values may be logged: checked at the user's call, made safe for JSON and W&B."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from ._config import warn_once
from ._forksafe import loading_unless_imported

_MAX_DEPTH = 32


def sha256_hex8(text: str) -> str:
    """The first 8 hex digits of `text`'s SHA-256 (`hashlib`, which loads OpenSSL, is imported on
    first use, not by `import tracked`; on any thread, so under `loading()`)."""
    with loading_unless_imported("hashlib"):
        import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


# Names of arguments and config keys whose values are secrets, and values that look like keys.
_SECRET_NAME = re.compile(
    r"(api[_-]?key|password|passwd|secret|authori[sz]ation|credential|cookie|private[_-]?key|bearer"
    r"|^token$|[_\-.]token$)",
    re.I,
)
_SECRET_VALUE = re.compile(
    r"\b(sk-[A-Za-z0-9_\-]{8,}|xox[bap]-[A-Za-z0-9\-]{8,}|gh[pousr]_[A-Za-z0-9]{16,}|AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{20,})"
)
REDACTED = "[REDACTED]"


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secrets removed: values under secret-like keys, and
    strings that look like provider keys."""
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _SECRET_NAME.search(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _is_wandb_object(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module == "wandb" or module.startswith("wandb.")


def clean(value: Any, where: str, depth: int = 0) -> Any:
    """A value W&B and JSON can both take: numbers (NaN and inf kept), strings, None, and lists and
    string-keyed dicts of those. Anything else (bytes, arbitrary objects) becomes its `repr`, with
    one warning per type. Non-string keys are the caller's mistake: TypeError.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"{where}: strings must be valid Unicode text; {value[:40]!r} has a lone surrogate"
                ) from None
        return value
    if isinstance(value, int):
        # JSON readers and W&B lose precision past 2**63; keep the number as text then.
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise TypeError(f"{where}: keys must be strings, got {k!r} ({type(k).__name__})")
                out[k] = clean(v, where, depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [clean(v, where, depth + 1) for v in value]
    if _is_wandb_object(value):
        from . import _lifecycle

        _lifecycle.finish_before_wandb_exits()  # (its media files must outlive an experiment left open)
        return value  # a wandb.Table, Image, ...: W&B takes it, the local store keeps its repr
    if type(value).__module__ == "numpy":
        # Real numpy scalars are numbers; arrays are lists; anything else (complex) is a repr.
        kind = getattr(value, "dtype", None)
        if getattr(value, "ndim", None) == 0 and getattr(kind, "kind", "") in "biuf":
            return clean(value.item(), where, depth)
        if getattr(value, "ndim", 0) > 0 and hasattr(value, "tolist"):
            return clean(value.tolist(), where, depth)
    warn_once(
        ("repr", where, type(value)),
        f"tracked: {where}: {type(value).__name__} values cannot be logged as they are; stored as their repr",
    )
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _default(value: Any) -> Any:
    # Only wandb media objects reach here (clean() let them through).
    return repr(value)


# One encoder for every line: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(default=_default, ensure_ascii=False, separators=(",", ":"))


_ASCII_ENCODER = json.JSONEncoder(default=_default, ensure_ascii=True, separators=(",", ":"))


# The values orjson writes as the standard library would read them back: exact types only (a
# numpy float64 is a float subclass, a bool an int's), finite floats checked one by one.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_orjson_dumps: Callable[[Any], bytes] | None = None


def fast_dumps() -> Callable[[Any], bytes]:
    """orjson's `dumps`, imported on first use under the load lock (it takes about 20 ms, so not at
    `import tracked`): the local store calls it as it opens, on the caller's thread."""
    global _orjson_dumps
    if _orjson_dumps is None:
        with loading_unless_imported("orjson"):
            import orjson
        _orjson_dumps = orjson.dumps
    return _orjson_dumps


def dumps_bytes(record: Mapping[str, Any]) -> bytes:
    """One JSON line as UTF-8. NaN and infinity are written as JSON's common extension (Python
    reads them back); text that is not valid Unicode (a lone surrogate in a captured input, say)
    is written with JSON escapes, which read back the same.

    A flat record of plain values (every row and call record tracked writes itself) is written by
    orjson, in about a quarter of the standard library's time; anything else (a nested value, NaN
    or infinity, which orjson would write as null, an int past 64 bits, a lone surrogate) by the
    standard library. Both read back as the same values."""
    for value in record.values():
        kind = type(value)
        if kind is float:
            if value - value != 0.0:  # NaN or infinity
                break
        elif kind not in _PLAIN:
            break
    else:
        try:
            return (_orjson_dumps or fast_dumps())(record)
        except TypeError:  # orjson's JSONEncodeError: a key not a str, an int past 64 bits, a lone surrogate
            pass
    line = _ENCODER.encode(record)
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:
        return _ASCII_ENCODER.encode(record).encode("ascii")


def is_number(value: Any) -> TypeGuard[int | float]:
    """A real number (not a bool, not NaN): what metric means and totals count."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )


def money(value: Any) -> str:
    """A cost in USD, the same way everywhere: three significant digits below a dollar ("$0.00288",
    "$0.0308", "$0.500"), cents from a dollar up ("$1.23", "$1,234.57"), "$0.00" for nothing;
    "-" when not a number."""
    if not is_number(value) or math.isinf(value):
        return "-"
    if value == 0:
        return "$0.00"
    if abs(value) >= 0.9995:  # what would round to $1.000 is shown as $1.00
        return f"${value:,.2f}"
    decimals = 2 - math.floor(math.log10(float(f"{abs(value):.2e}")))  # three significant digits, once rounded
    return f"${value:.{decimals}f}"


def cost_text(value: Any, unpriced: Any) -> str:
    """A cost that says what it leaves out: "$0.0031 + 3 unpriced", "unknown (3 unpriced)"; never
    "$0" for calls whose cost is unknown."""
    n = int(unpriced) if is_number(unpriced) else 0
    if n <= 0:
        return money(value)
    if is_number(value) and value > 0:
        return f"{money(value)} + {n:,} unpriced"
    return f"unknown ({n:,} unpriced)"


def tokens_text(value: Any, unknown: Any) -> str:
    """Tokens that say what they leave out: "1,234 + 2 unknown" (LLM calls whose usage could not be
    read), "unknown (2 calls)" when none was read; never "0" for calls that were not counted."""
    n = int(unknown) if is_number(unknown) else 0
    known = f"{int(value):,}" if is_number(value) else None
    if n <= 0:
        return known or "-"
    if known is not None and value > 0:
        return f"{known} + {n:,} unknown"
    return f"unknown ({n:,} call{'' if n == 1 else 's'})"
