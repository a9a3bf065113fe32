"""Checking one parameter value against its catalogue rule, and coercing typed input.

Used by the catalogue loader (every default must satisfy its own rule) and by the pipeline
(every user value). A broken rule is a `Violation`: a code plus the figures a message needs;
wording in the user's language happens in the pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trt.catalog.schema import ParamSpec, ParamType, Role


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule. `code` is one of the keys under `validation.` in the locale files."""

    code: str
    args: dict[str, Any] = field(default_factory=dict)


_NUMBER_TYPES = (ParamType.INTEGER, ParamType.NUMBER)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def matches_type(kind: ParamType | None, value: Any) -> bool:
    if kind is ParamType.STRING:
        return isinstance(value, str)
    if kind is ParamType.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is ParamType.NUMBER:
        return is_number(value) and math.isfinite(value)
    if kind is ParamType.BOOLEAN:
        return isinstance(value, bool)
    if kind is ParamType.ARRAY:
        return isinstance(value, list)
    if kind is ParamType.OBJECT:
        return isinstance(value, dict)
    return False


def coerce(spec: ParamSpec, value: Any) -> Any:
    """Convert typed input to the schema's type where that is unambiguous; else return as is.

    "10" becomes 10 for an integer field, "1,5" becomes 1.5 for a number, 5 becomes "5" for a
    string enum of numbers, a single URL becomes a one-element list for an array of URLs.
    Anything else is left for `check` to reject.
    """
    if spec.type is ParamType.INTEGER and isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and len(text) <= 18:
            return int(text)
        return value
    if spec.type is ParamType.NUMBER and isinstance(value, str):
        text = value.strip().replace(",", ".")
        try:
            number = float(text)
        except ValueError:
            return value
        if not math.isfinite(number) or len(text) > 32:
            return value
        return int(number) if number.is_integer() and "." not in text else number
    if spec.type is ParamType.BOOLEAN and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on", "да"}:
            return True
        if lowered in {"false", "0", "no", "off", "нет"}:
            return False
        return value
    if spec.type is ParamType.STRING and spec.enum is not None and is_number(value):
        text = str(value)
        if text in spec.enum:
            return text
        return value
    if spec.type is ParamType.ARRAY and isinstance(value, str) and spec.role is Role.MEDIA:
        return [value]
    return value


def check(spec: ParamSpec, value: Any) -> list[Violation]:
    """Every rule of `spec` that `value` breaks (empty when the value is acceptable)."""
    if not matches_type(spec.type, value):
        return [Violation("type", {"expected": spec.type.value})]
    if spec.enum is not None:
        offered = spec.offered or spec.enum
        if value not in offered or type(value) is not type(spec.enum[0]):
            return [Violation("enum", {"allowed": list(offered)})]
        return []
    violations: list[Violation] = []
    if is_number(value):
        low, high = spec.minimum, spec.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            violations.append(Violation("range", {"minimum": low, "maximum": high}))
    if isinstance(value, str):
        length = len(value)
        if spec.min_length is not None and length < spec.min_length:
            violations.append(Violation("min_length", {"limit": spec.min_length}))
        if spec.max_length is not None and length > spec.max_length:
            violations.append(Violation("max_length", {"limit": spec.max_length}))
        if spec.role is Role.MEDIA and not _is_url(value):
            violations.append(Violation("url"))
    if isinstance(value, list):
        count = len(value)
        if spec.min_items is not None and count < spec.min_items:
            violations.append(Violation("min_items", {"limit": spec.min_items}))
        if spec.max_items is not None and count > spec.max_items:
            violations.append(Violation("max_items", {"limit": spec.max_items}))
        if not all(matches_type(spec.item_type, item) for item in value):
            violations.append(Violation("item_type", {"expected": str(spec.item_type)}))
        elif spec.role is Role.MEDIA and not all(_is_url(item) for item in value):
            violations.append(Violation("url"))
    if spec.media is not None and not violations:
        violations.extend(_duration_violations(spec, value))
    return violations


def _duration_violations(spec: ParamSpec, value: Any) -> list[Violation]:
    assert spec.media is not None
    low, high = spec.media.min_duration_s, spec.media.max_duration_s
    for item in media_items(value):
        seconds = media_duration(item)
        if seconds is None:
            continue
        # Telegram reports whole seconds; a clip of "3 s" may be 2.6 s, so the low bound is
        # compared with what the user could have meant, the high one with what was reported.
        if (low is not None and seconds < math.floor(low)) or (high is not None and seconds > high):
            return [Violation("duration", {"minimum": low, "maximum": high, "seconds": seconds})]
    return []


TELEGRAM_FILE_PREFIX = "tg:"  # a user's upload, by Telegram file id, until the engine uploads it
_DURATION_MARK = "#"  # never in a file id (base64url); the length Telegram reported follows


def is_telegram_file(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(TELEGRAM_FILE_PREFIX) and len(value) > 3


def telegram_reference(file_id: str, duration_s: float | None = None) -> str:
    """A user's upload as a parameter value: `tg:<file id>`, and `#<seconds>` when Telegram
    told its length (video, audio, voice), so that a per-second price and the model's length
    limits are known before any money is held."""
    reference = TELEGRAM_FILE_PREFIX + file_id
    if duration_s is not None and duration_s > 0:
        reference += f"{_DURATION_MARK}{math.ceil(duration_s)}"
    return reference


def telegram_file_id(value: str) -> str:
    return value[len(TELEGRAM_FILE_PREFIX) :].split(_DURATION_MARK, 1)[0]


def media_duration(value: Any) -> int | None:
    """Whole seconds of a media value, when known (a Telegram upload that reported them)."""
    if not is_telegram_file(value) or _DURATION_MARK not in value:
        return None
    text = value.rsplit(_DURATION_MARK, 1)[1]
    return int(text) if text.isdigit() and len(text) <= 6 else None


def media_items(value: Any) -> list[Any]:
    """The files of a media value: a list as is, a single value as a list of one, none empty."""
    if isinstance(value, list):
        return value
    return [] if value in (None, "") else [value]


def _is_url(value: Any) -> bool:
    """A media value: a URL, or a user's Telegram upload the engine turns into one."""
    if is_telegram_file(value):
        return True
    return isinstance(value, str) and value.startswith(("https://", "http://")) and len(value) > 8


def is_numeric_param(spec: ParamSpec) -> bool:
    """A parameter whose value is a number, or a string enum made of numbers."""
    if spec.type in _NUMBER_TYPES:
        return True
    return spec.enum is not None and all(_numeric_text(v) for v in spec.enum)


def _numeric_text(value: Any) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True
