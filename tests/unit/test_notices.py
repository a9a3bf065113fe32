"""Notices are data in the outbox and words only in bot/: each kind rendered in the language of
the person told, and rows written before notices were data delivered as they were."""

from __future__ import annotations

from decimal import Decimal

from trt.bot.notices import Notices
from trt.catalog.loader import default_catalog
from trt.catalog.pricing import Rates
from trt.pipeline import UnifiedModelPipeline

NOTICES = Notices(UnifiedModelPipeline(default_catalog(), Rates(Decimal("90"), Decimal("1"))))


def test_each_notice_in_the_users_language() -> None:
    result = {"notice": "result", "free": False, "model": "Nano Banana 2"}
    assert NOTICES.text("ru", "nb2", result) == "✅ Готово: Nano Banana 2"
    assert NOTICES.text("ru", "nb2", {**result, "free": True}).endswith("(бесплатно)")
    failed = {"notice": "failed", "reason": "400", "refund_kop": 1250, "free": False}
    text = NOTICES.text("en", "nb2", failed)
    assert "refused by the content policy" in text
    assert "12.50" in text or "12,50" in text
    russian = NOTICES.text("ru", "nb2", {**failed, "reason": "no-such-code"})
    assert "Причина: неизвестная ошибка провайдера." in russian
    assert "Генерирую" in NOTICES.text("ru", "nb2", {"notice": "running"})
    undelivered = NOTICES.text("ru", "nb2", {"notice": "undelivered", "refund_kop": 500})
    assert undelivered.startswith("❌ Не удалось доставить результат: Nano Banana 2")


def test_a_referral_bonus_is_told_in_the_inviters_language() -> None:
    bonus = {"notice": "referral_bonus", "amount_kop": 5000, "lang": "en"}
    assert NOTICES.text("ru", "nb2", bonus) == NOTICES.text("en", "nb2", bonus)
    assert NOTICES.text("ru", "nb2", {**bonus, "lang": "ru"}) != NOTICES.text("en", "nb2", bonus)


def test_rows_from_the_previous_version_are_sent_as_written() -> None:
    assert NOTICES.text("ru", "nb2", {"text": "❌ старый текст"}) == "❌ старый текст"
    old_result = {"caption": "✅ Готово: Nano Banana 2", "model": "Nano Banana 2"}
    assert NOTICES.text("ru", "nb2", old_result) == "✅ Готово: Nano Banana 2"


def test_links_name_the_model_once() -> None:
    text = NOTICES.links("ru", "nb2", 60 * 1024 * 1024, ["https://k/1?a=1&b=2"])
    assert text.startswith("✅ Готово: Nano Banana 2\nФайл слишком большой для Telegram (60 MB)")
    assert "a=1&amp;b=2" in text
