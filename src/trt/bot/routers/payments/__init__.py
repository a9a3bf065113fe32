"""Top-ups, one module per feature: the method screen, Stars invoices and payments, hosted-checkout
(card) links with 54-ФЗ receipts, manual transfers with an admin's verdict, promo codes, the
referral link, terms, refunds.

Handlers stay thin: the money moves in `trt.payments` (each credit once, by the provider's id);
the handlers parse, call and render. A pre-checkout query is answered at once (Telegram
allows 10 s) with the reason when refused.
"""

from __future__ import annotations

from trt.bot.routers.payments.common import TopUpFlow
from trt.bot.routers.payments.refunds import on_refund_command, refund_payment
from trt.bot.routers.payments.topup import build, topup_screen

__all__ = ["TopUpFlow", "build", "on_refund_command", "refund_payment", "topup_screen"]
