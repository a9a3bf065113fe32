"""The whole Bot API as data (Bot API 10.2 spec) and strict checking of calls against it.

`BotApiSpec.decode_and_check` turns the wire form of a call (urlencoded strings, JSON-encoded
nested objects, `attach://` file references) into typed values and reports every problem:
unknown method or parameter, missing required parameter, wrong type (recursively through nested
types such as `InlineKeyboardMarkup`), and the length limits stated in the spec's descriptions
(`callback_data` 1-64 bytes, text 1-4096 characters after entity parsing, …). Problems carry the
description Telegram itself would answer with, where Telegram has a known wording.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).with_name("botapi-10.2.json")
PRIMITIVES = {"Integer", "String", "Boolean", "Float", "InputFile"}
_LIMIT = re.compile(r"(\d+)-(\d+) (characters|bytes)")

# Telegram's own wording for the limits bots hit most (reference/telegram.md §8).
_LIMIT_ERRORS = {
    ("callback_data", "long"): "BUTTON_DATA_INVALID",
    ("callback_data", "short"): "BUTTON_DATA_INVALID",
    ("text", "short"): "message text is empty",
    ("text", "long"): "message is too long",
    ("caption", "long"): "message caption is too long",
}
_ANSWER_TEXT_TOO_LONG = "MESSAGE_TOO_LONG"


@dataclass(frozen=True, slots=True)
class Problem:
    """One way a call breaks the Bot API; `description` is what the server answers."""

    kind: str  # unknown_method | unknown_parameter | missing_parameter | wrong_type | limit | parse
    field: str
    description: str


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file parameter sent as an upload (`attach://name` or the part itself)."""

    part: str


class BotApiSpec:
    def __init__(self, data: dict[str, Any]) -> None:
        self.version: str = data["version"]
        self.methods: dict[str, Any] = data["methods"]
        self.types: dict[str, Any] = data["types"]
        self._methods_lower = {name.lower(): name for name in self.methods}

    def method_name(self, requested: str) -> str | None:
        """Telegram matches method names case-insensitively."""
        return self._methods_lower.get(requested.lower())

    def fields_of(self, method: str) -> dict[str, dict[str, Any]]:
        return {f["name"]: f for f in self.methods[method].get("fields", [])}

    def decode_and_check(
        self, method: str, raw: dict[str, Any], uploads: set[str]
    ) -> tuple[dict[str, Any], list[Problem]]:
        """Typed parameters and every problem of one call of `method` (a known method name)."""
        fields = self.fields_of(method)
        problems: list[Problem] = []
        values: dict[str, Any] = {}
        for name, value in raw.items():
            field = fields.get(name)
            if field is None:
                if name in uploads:  # the file part behind an attach:// reference
                    continue
                problems.append(
                    Problem("unknown_parameter", name, f"Bad Request: unknown parameter {name}")
                )
                continue
            decoded, ok = _decode(value, field["types"], uploads, name)
            if not ok:
                problems.append(
                    Problem(
                        "wrong_type",
                        name,
                        f'Bad Request: field "{name}" must be of type '
                        f"{' or '.join(field['types'])}",
                    )
                )
                continue
            problems.extend(self.check_value(decoded, field["types"], name))
            values[name] = decoded
        for name, field in fields.items():
            if field["required"] and name not in raw:
                missing = "message text is empty" if name == "text" else f"{name} is empty"
                problems.append(Problem("missing_parameter", name, f"Bad Request: {missing}"))
        problems.extend(self._check_limits(method, fields, values))
        return values, problems

    # -- nested types -------------------------------------------------------------------
    def check_value(self, value: Any, types: list[str], path: str) -> list[Problem]:
        """Problems of a typed value against a list of alternative spec types."""
        best: list[Problem] | None = None
        for kind in types:
            found = self._check_one(value, kind, path)
            if not found:
                return []
            if best is None or len(found) < len(best):
                best = found
        return best or []

    def _check_one(self, value: Any, kind: str, path: str) -> list[Problem]:
        if kind.startswith("Array of "):
            if not isinstance(value, list):
                return [Problem("wrong_type", path, f"Bad Request: {path} must be an array")]
            inner = kind.removeprefix("Array of ")
            found: list[Problem] = []
            for index, item in enumerate(value):
                found.extend(self.check_value(item, [inner], f"{path}[{index}]"))
            return found
        if kind in PRIMITIVES:
            return (
                []
                if _is_primitive(value, kind)
                else [Problem("wrong_type", path, f"Bad Request: {path} must be {kind}")]
            )
        spec = self.types.get(kind)
        if spec is None:
            return [Problem("wrong_type", path, f"Bad Request: unknown type {kind}")]
        if spec.get("subtypes"):
            return self.check_value(value, list(spec["subtypes"]), path)
        if not isinstance(value, dict):
            return [Problem("wrong_type", path, f"Bad Request: {path} must be an object")]
        fields = {f["name"]: f for f in spec.get("fields", [])}
        found = []
        for name, item in value.items():
            field = fields.get(name)
            if field is None:
                found.append(
                    Problem(
                        "unknown_parameter",
                        f"{path}.{name}",
                        f"Bad Request: unknown field {path}.{name}",
                    )
                )
                continue
            found.extend(self.check_value(item, field["types"], f"{path}.{name}"))
            found.extend(_description_limit(field, item, f"{path}.{name}"))
        for name, field in fields.items():
            if field["required"] and name not in value:
                found.append(
                    Problem(
                        "missing_parameter",
                        f"{path}.{name}",
                        f"Bad Request: field {path}.{name} is required",
                    )
                )
        return found

    # -- limits --------------------------------------------------------------------------
    def _check_limits(
        self, method: str, fields: dict[str, dict[str, Any]], values: dict[str, Any]
    ) -> list[Problem]:
        found: list[Problem] = []
        parse_mode = values.get("parse_mode")
        for name, value in values.items():
            if not isinstance(value, str):
                continue
            measured = value
            if name in ("text", "caption") and parse_mode == "HTML":
                try:
                    measured = html_to_plain(value)
                except EntityParseError as exc:
                    found.append(
                        Problem("parse", name, f"Bad Request: can't parse entities: {exc}")
                    )
                    continue
            if method == "answerCallbackQuery" and name == "text" and len(measured) > 200:
                found.append(Problem("limit", name, f"Bad Request: {_ANSWER_TEXT_TOO_LONG}"))
                continue
            found.extend(_description_limit(fields[name], measured, name))
        return found


def _description_limit(field: dict[str, Any], value: Any, path: str) -> list[Problem]:
    if not isinstance(value, str):
        return []
    match = _LIMIT.search(field.get("description", ""))
    if match is None:
        return []
    low, high, unit = int(match[1]), int(match[2]), match[3]
    size = len(value.encode("utf-8")) if unit == "bytes" else len(value)
    if low <= size <= high:
        return []
    name = path.rsplit(".", 1)[-1]
    side = "short" if size < low else "long"
    wording = _LIMIT_ERRORS.get((name, side), f"{path} must be {low}-{high} {unit}, got {size}")
    return [Problem("limit", path, f"Bad Request: {wording}")]


def _is_primitive(value: Any, kind: str) -> bool:
    if kind == "Integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "Float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "Boolean":
        return isinstance(value, bool)
    if kind == "String":
        return isinstance(value, str)
    if kind == "InputFile":
        return isinstance(value, FileRef)
    return False


def _decode(value: Any, types: list[str], uploads: set[str], name: str) -> tuple[Any, bool]:
    """Wire value → typed value, trying each declared type in turn."""
    if not isinstance(value, str):  # JSON bodies arrive typed already
        return value, True
    for kind in types:
        if kind == "InputFile":
            if value.startswith("attach://") and value[len("attach://") :] in uploads:
                return FileRef(value[len("attach://") :]), True
            if name in uploads:
                return FileRef(name), True
        elif kind == "Integer":
            if re.fullmatch(r"-?\d{1,20}", value):
                return int(value), True
        elif kind == "Float":
            try:
                return float(value), True
            except ValueError:
                pass
        elif kind == "Boolean":
            if value in ("true", "false", "True", "False", "1", "0"):
                return value in ("true", "True", "1"), True
        elif kind == "String":
            return value, True
        else:  # an object or an array travels as a JSON string
            try:
                parsed = json.loads(value)
            except ValueError:
                continue
            if isinstance(parsed, (dict, list)):
                return parsed, True
    return value, False


class EntityParseError(ValueError):
    pass


_ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
    "tg-time",
}


_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
    "tg-time": "date_time",
}


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _EntityParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.utf16_position = 0  # in UTF-16 code units, as Telegram counts entity offsets
        self.stack: list[tuple[str, int, str | None]] = []
        self.entities: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS:
            raise EntityParseError(f'Unsupported start tag "{tag}"')
        href = dict(attrs).get("href")
        if tag == "a" and not href:
            raise EntityParseError("Can't find href in the a tag")
        self.stack.append((tag, self.utf16_position, href))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            raise EntityParseError(f'Unmatched end tag "{tag}"')
        _tag, start, href = self.stack.pop()
        if self.utf16_position > start:
            entity: dict[str, Any] = {
                "type": _ENTITY_TYPES[tag],
                "offset": start,
                "length": self.utf16_position - start,
            }
            if href:
                entity["url"] = href
            self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        self.utf16_position += _utf16_len(data)


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities of an HTML message; raises `EntityParseError` like Telegram."""
    if re.search(r"&(?!(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);)", text):
        raise EntityParseError('Unsupported HTML entity or unescaped "&"')
    bare_lt = re.search(r"<(?![a-zA-Z/])", text)
    if bare_lt:
        raise EntityParseError(f'Unexpected "<" at byte offset {bare_lt.start()}')
    parser = _EntityParser()
    parser.feed(text)
    parser.close()
    if parser.stack:
        raise EntityParseError(
            f'Can\'t find end tag corresponding to start tag "{parser.stack[-1][0]}"'
        )
    return "".join(parser.text), sorted(parser.entities, key=lambda e: e["offset"])


def html_to_plain(text: str) -> str:
    """The text Telegram shows for an HTML message."""
    return parse_html(text)[0]


@cache
def load_spec() -> BotApiSpec:
    return BotApiSpec(json.loads(SPEC_PATH.read_text(encoding="utf-8")))
