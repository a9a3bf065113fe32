from __future__ import annotations

import pytest

from trt.i18n import LANGUAGES, catalog_of, flatten, join_choices, normalize_lang, plural, t


def test_every_key_exists_in_every_language() -> None:
    keys = {lang: set(flatten(catalog_of(lang))) for lang in LANGUAGES}
    assert keys["ru"] == keys["en"], keys["ru"] ^ keys["en"]


def test_placeholders_agree_between_languages() -> None:
    import string

    def fields(text: object) -> set[str]:
        if not isinstance(text, str):
            return set()
        return {f for _, f, _, _ in string.Formatter().parse(text) if f}

    ru, en = flatten(catalog_of("ru")), flatten(catalog_of("en"))
    for key, text in ru.items():
        assert fields(text) == fields(en[key]), key


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, "1 символа"),
        (2, "2 символов"),
        (5, "5 символов"),
        (11, "11 символов"),
        (21, "21 символа"),
        (1000, "1000 символов"),
    ],
)
def test_russian_plural_after_comparatives(count: int, expected: str) -> None:
    assert plural("ru", "plural.chars", count) == expected


def test_english_plural() -> None:
    assert plural("en", "plural.files", 1) == "1 file"
    assert plural("en", "plural.files", 3) == "3 files"


def test_language_choice() -> None:
    assert normalize_lang("en-US") == "en"
    assert normalize_lang("ru") == "ru"
    assert normalize_lang("uk") == "ru"
    assert normalize_lang(None) == "ru"


def test_lookup_and_joining() -> None:
    assert t("ru", "common.yes_word") == "да"
    assert join_choices("ru", ["5", "10"]) == "5 или 10"
    assert join_choices("en", ["a", "b", "c"]) == "a, b or c"


def test_texts_fit_telegram_limits() -> None:
    """Messages ≤ 4096, button labels ≤ 64 characters (with room for their values)."""
    for lang in LANGUAGES:
        for key, text in flatten(catalog_of(lang)).items():
            if not isinstance(text, str):
                continue
            assert len(text) <= 4096, key
            if key.startswith(("menu.", "result.", "history.resend", "history.repeat")) or key in (
                "flow.start",
                "flow.done",
                "flow.cancel",
                "flow.generate",
                "flow.settings",
                "flow.edit",
                "flow.top_up",
                "flow.to_confirm",
            ):
                assert len(text) <= 32, key
