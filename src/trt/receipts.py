"""54-ФЗ receipts as YooKassa takes them: the customer's contact, the item, the codes.

A leaf module (no TRT imports): the settings validate their codes with it, the payment client
builds receipts with it, the bot checks what a user types as their contact with it, and the
sandbox YooKassa checks what arrives against the same rules YooKassa states
(https://yookassa.ru/developers/payment-acceptance/receipts/54fz/yoomoney/parameters-values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# «Признак способа расчёта» and «признак предмета расчёта», YooKassa's spelling.
PAYMENT_MODES = frozenset(
    {
        "full_prepayment",
        "partial_prepayment",
        "advance",
        "full_payment",
        "partial_payment",
        "credit",
        "credit_payment",
    }
)
PAYMENT_SUBJECTS = frozenset(
    {
        "commodity",
        "excise",
        "job",
        "service",
        "gambling_bet",
        "gambling_prize",
        "lottery",
        "lottery_prize",
        "intellectual_activity",
        "payment",
        "agent_commission",
        "composite",
        "another",
        "property_right",
        "non_operating_gain",
        "insurance_premium",
        "sales_tax",
        "resort_fee",
    }
)
VAT_CODES = range(1, 13)
TAX_SYSTEM_CODES = range(1, 7)
DESCRIPTION_MAX = 128
EMAIL_MAX = 64

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_PHONE_JUNK = re.compile(r"[\s()\-.]")


def is_email(value: str) -> bool:
    return len(value) <= EMAIL_MAX and _EMAIL.fullmatch(value) is not None


def phone_digits(value: str) -> str | None:
    """A phone number as YooKassa wants it (ITU-T E.164 digits, e.g. `79001234567`), or None.

    Russian habits are accepted: `8 900 123-45-67` and `+7 (900) 123-45-67` both give
    `79001234567`; other countries need their `+` and code."""
    raw = _PHONE_JUNK.sub("", value.strip())
    if raw.startswith("+"):
        digits = raw[1:]
    elif len(raw) == 11 and raw[:1] in ("7", "8"):
        digits = "7" + raw[1:]
    elif len(raw) == 10 and raw.startswith("9"):
        digits = "7" + raw
    else:
        return None
    if not digits.isdigit() or not 10 <= len(digits) <= 15 or digits.startswith("0"):
        return None
    if digits.startswith("7") and len(digits) != 11:
        return None
    return digits


@dataclass(frozen=True, slots=True)
class Contact:
    """Where the receipt goes: an e-mail or a phone (stored as `email:…` / `phone:…`)."""

    kind: str  # "email" | "phone"
    value: str

    @classmethod
    def parse(cls, text: str) -> Contact | None:
        """What a user typed, if it is an e-mail or a phone number."""
        text = text.strip()
        if "@" in text:
            return cls("email", text.lower()) if is_email(text) else None
        digits = phone_digits(text)
        return cls("phone", digits) if digits else None

    @classmethod
    def load(cls, stored: str | None) -> Contact | None:
        if not stored:
            return None
        kind, _, value = stored.partition(":")
        return cls(kind, value) if kind in ("email", "phone") and value else None

    def dump(self) -> str:
        return f"{self.kind}:{self.value}"

    def masked(self) -> str:
        """For a screen: `a***@mail.ru`, `+7 *** ***-45-67`."""
        if self.kind == "email":
            name, _, domain = self.value.partition("@")
            return f"{name[:1]}***@{domain}"
        return f"+{self.value[:1]} *** ***-{self.value[-4:-2]}-{self.value[-2:]}"

    def customer(self) -> dict[str, str]:
        return {self.kind: self.value}


@dataclass(frozen=True, slots=True)
class ReceiptRules:
    """The shop's codes (from settings)."""

    vat_code: int
    payment_mode: str
    payment_subject: str
    tax_system_code: int | None = None


def rubles(amount_kop: int) -> str:
    return f"{Decimal(amount_kop) / 100:.2f}"


def receipt(
    rules: ReceiptRules, contact: Contact, description: str, amount_kop: int
) -> dict[str, Any]:
    """One item for the whole amount: a top-up, or its refund."""
    body: dict[str, Any] = {
        "customer": contact.customer(),
        "items": [
            {
                "description": description[:DESCRIPTION_MAX],
                "quantity": "1.00",
                "amount": {"value": rubles(amount_kop), "currency": "RUB"},
                "vat_code": rules.vat_code,
                "payment_mode": rules.payment_mode,
                "payment_subject": rules.payment_subject,
            }
        ],
    }
    if rules.tax_system_code is not None:
        body["tax_system_code"] = rules.tax_system_code
    return body
