"""User-facing texts: one YAML file per language in `locales/`, looked up by dotted key.

Russian is the default language; English is the other one. A key missing in either file is a
test failure (tests/unit/test_i18n.py), so at run time a lookup only falls back as a last resort.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

Lang = Literal["ru", "en"]
LANGUAGES: tuple[Lang, ...] = ("ru", "en")
DEFAULT_LANG: Lang = "ru"
LOCALES_DIR = Path(__file__).with_name("locales")
# libyaml's C loader when present (the pure-Python one takes ~0.1 s per file at startup).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def normalize_lang(code: str | None) -> Lang:
    """TRT's language for a Telegram `language_code` (Russian unless it is clearly English)."""
    if code and code.lower().split("-")[0] == "en":
        return "en"
    return DEFAULT_LANG


@cache
def catalog_of(lang: Lang) -> dict[str, Any]:
    text = (LOCALES_DIR / f"{lang}.yaml").read_text(encoding="utf-8")
    data = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    assert isinstance(data, dict), f"{lang}.yaml must be a mapping"
    return data


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 'x'}} → {'a.b': 'x'}; lists (plural forms) stay whole."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


@cache
def _flat(lang: Lang) -> dict[str, Any]:
    return flatten(catalog_of(lang))


def t(lang: str, key: str, **values: Any) -> str:
    """The text for `key` in `lang`, formatted with `values`."""
    language = normalize_lang(lang)
    template = _flat(language).get(key)
    if template is None:
        template = _flat(DEFAULT_LANG).get(key, key)
    assert isinstance(template, str), f"{key} is not a text"
    return template.format(**values) if values else template


def plural(lang: str, key: str, count: int) -> str:
    """«5 символов», «1 file»: the count with the right plural form of `key`."""
    language = normalize_lang(lang)
    forms = _flat(language).get(key) or _flat(DEFAULT_LANG)[key]
    assert isinstance(forms, list), f"{key} must list plural forms"
    if language == "ru":
        n = abs(count) % 100
        if 11 <= n <= 14:
            form = forms[2]
        elif n % 10 == 1:
            form = forms[0]
        elif 2 <= n % 10 <= 4:
            form = forms[1]
        else:
            form = forms[2]
    else:
        form = forms[0] if abs(count) == 1 else forms[1]
    return f"{count} {form}"


def join_choices(lang: str, items: list[str]) -> str:
    """«5, 6 или 10» / "5, 6 or 10"."""
    if len(items) <= 1:
        return "".join(items)
    word = t(lang, "common.or")
    return f"{', '.join(items[:-1])} {word} {items[-1]}"
