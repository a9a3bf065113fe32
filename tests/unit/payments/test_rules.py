"""Payment rules that need no database: packages from the environment, referral codes, payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trt.config import ConfigError, StarsPackage, load_config
from trt.payments.bonuses import inviter_of, referral_code
from trt.payments.service import INVOICE_PREFIX, payment_id_of


def test_stars_packages_and_amounts_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STARS_PACKAGES", "10:20, 1000:2000")
    monkeypatch.setenv("TOPUP_AMOUNTS_RUB", "150,1500")
    monkeypatch.setenv("YOOKASSA_SHOP_ID", "100500")
    monkeypatch.setenv("YOOKASSA_SECRET_KEY", "test_secret_key_123")
    settings = load_config().payments
    assert settings.stars_packages == (StarsPackage(10, 20), StarsPackage(1000, 2000))
    assert settings.topup_amounts_rub == (150, 1500)
    assert settings.yookassa_enabled


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STARS_PACKAGES", "10-20"),
        ("STARS_PACKAGES", "0:100"),
        ("TOPUP_AMOUNTS_RUB", "100,abc"),
        ("WELCOME_BONUS_RUB", "-5"),
    ],
)
def test_bad_payment_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert [p.variable for p in caught.value.problems] == [name]


@given(st.integers(min_value=1, max_value=2**52 - 1))  # Telegram ids: at most 52 bits
def test_a_referral_code_names_its_user(user_id: int) -> None:
    assert inviter_of("ref_" + referral_code(user_id)) == user_id


@pytest.mark.parametrize("argument", [None, "", "ref_", "ref_!!", "promo_x", "ref_" + "z" * 14])
def test_other_start_arguments_name_nobody(argument: str | None) -> None:
    assert inviter_of(argument) is None


def test_only_our_invoice_payloads_name_a_payment() -> None:
    good = "a" * 32
    assert payment_id_of(INVOICE_PREFIX + good) == good
    for payload in (
        "",
        "tp:",
        "tp:short",
        "xx:" + good,
        INVOICE_PREFIX + good + "x",
        "tp:" + "-" * 32,
    ):
        assert payment_id_of(payload) is None
