"""The prompt assistant's pure parts: when a translation is offered, what the chat model is
asked, how its answer is cleaned, and how the KIE client reads chat answers and errors."""

from __future__ import annotations

import json

import pytest

from trt.assistant import AssistKind, clean, has_cyrillic, instructions, wants_translation
from trt.catalog.loader import default_catalog
from trt.kie.client import _chat_answer
from trt.kie.errors import KieError

CATALOG = default_catalog()


def test_a_translation_is_offered_only_for_cyrillic_prompts_of_english_models() -> None:
    imagen, banana = CATALOG.get("im4f"), CATALOG.get("nb2")
    assert imagen is not None
    assert banana is not None
    assert imagen.english_prompt
    assert not banana.english_prompt
    assert wants_translation(imagen, "кот в шляпе")
    assert not wants_translation(imagen, "a cat in a hat")
    assert not wants_translation(banana, "кот в шляпе")
    assert has_cyrillic("Ёж")
    assert not has_cyrillic("hedgehog")


def test_speech_and_lyrics_models_are_never_flagged_for_translation() -> None:
    """Their text is spoken or sung as written: a translation would change the result."""
    for model in CATALOG.models.values():
        if model.category.value == "audio":
            assert not model.english_prompt, model.slug


def test_instructions_say_what_to_keep_and_which_language() -> None:
    imagen, banana = CATALOG.get("im4f"), CATALOG.get("nb2")
    assert imagen is not None
    assert banana is not None
    translate = instructions(AssistKind.TRANSLATE, imagen, 2000)
    assert translate.startswith("Translate the user's prompt for the generation model Imagen")
    assert "Keep any text in quotes exactly as written" in translate
    assert "Stay under 2000 characters." in translate
    assert "Answer in English." in instructions(AssistKind.IMPROVE, imagen, None)
    improve = instructions(AssistKind.IMPROVE, banana, None)
    assert "Answer in the language the user wrote in." in improve
    assert "composition, lighting" in improve
    assert "characters" not in improve


@pytest.mark.parametrize(
    ("answer", "prompt"),
    [
        ("a cat", "a cat"),
        ('  "a cat in a hat"  ', "a cat in a hat"),
        ("«кот в шляпе»", "кот в шляпе"),
        ("```\na cat\n```", "a cat"),
        ("Prompt: a cat", "a cat"),
        ("Improved prompt: a cat", "a cat"),
        ('a "Hello" sign and a "Bye" sign', 'a "Hello" sign and a "Bye" sign'),
        ("", ""),
    ],
)
def test_clean_keeps_the_prompt_only(answer: str, prompt: str) -> None:
    assert clean(answer) == prompt


def _openai(content: object) -> str:
    return json.dumps(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    )


def test_chat_answers_are_read_and_every_failure_is_a_kie_error() -> None:
    assert _chat_answer(200, _openai("  a cat  ")) == "a cat"
    failures = [
        (200, _openai(""), "malformed"),
        (200, _openai(None), "malformed"),
        (200, "<html>", "malformed"),
        (502, "<html>bad gateway</html>", "502"),
        (200, json.dumps({"code": 500, "msg": "Server error"}), "500"),
        (200, json.dumps({"code": 200, "msg": "ok", "data": None}), "malformed"),
        (429, json.dumps({"code": 429, "msg": "Too many requests"}), "429"),
        (400, json.dumps({"error": {"message": "bad request"}}), "400"),
        (200, json.dumps([1, 2]), "malformed"),
    ]
    for status, text, code in failures:
        with pytest.raises(KieError) as raised:
            _chat_answer(status, text)
        assert raised.value.code == code, (status, text)
