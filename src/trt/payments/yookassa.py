"""Card and SBP payments through YooKassa's REST API (enabled when the shop is configured).

A payment is created with Basic auth (shop id, secret key) and an `Idempotence-Key` (our payment
id: a retried create cannot make two payments); the user pays on YooKassa's page. A notification
is never trusted: only its payment id is read, and the payment is fetched from the API; it is
credited once by YooKassa's id when the fetched payment has succeeded with our amount. Pending
payments are also checked periodically, so a lost notification costs a few minutes at most.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from decimal import Decimal
from ipaddress import ip_network
from typing import Any
from urllib.parse import quote

import aiohttp

from trt.catalog.pricing import format_money
from trt.config import PaymentsSettings
from trt.i18n import t
from trt.logs import get_logger
from trt.payments.providers import ProviderContext, ProviderError, ReceiptContactMissing
from trt.payments.service import PaymentService, PaymentView
from trt.payments.stars import (
    REFUNDED_NOW,
    REFUSED,
    UNCLEAR,
    RefundSteps,
    notify,
    settle_refund,
    tell_credited,
)
from trt.receipts import Contact, ReceiptRules, receipt, rubles
from trt.telegram.api import BotApi
from trt.telegram.sender import Sender
from trt.telemetry.events import Event, Reason, new_cid, telemetry

log = get_logger(__name__)
# YooKassa's payment ids: 36 characters of hex digits and dashes (a UUID's shape).
PAYMENT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# Where YooKassa sends notifications from (its documentation, "Входящие уведомления").
YOOKASSA_NETWORKS = tuple(
    ip_network(n)
    for n in (
        "185.71.76.0/27",
        "185.71.77.0/27",
        "77.75.153.0/25",
        "77.75.156.11/32",
        "77.75.156.35/32",
        "77.75.154.128/25",
        "2a02:5180::/32",
    )
)


def is_payment_id(value: str) -> bool:
    return PAYMENT_ID.fullmatch(value) is not None


TIMEOUT = aiohttp.ClientTimeout(total=20, connect=5, sock_read=15)
CHECK_AFTER_S = 30.0  # a pending payment is looked up once it is this old
MEMO = "ЮKassa"


class YooKassaError(ProviderError):
    """YooKassa refused or could not be reached; `status` is the HTTP status of a refusal
    (a 4xx is YooKassa's definite "no": it did not take effect; a 5xx or no answer may have
    come after YooKassa acted), None when no answer came."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, definite=status is not None and 400 <= status < 500)
        self.status = status


def kopecks_of(amount: dict[str, Any]) -> int | None:
    """YooKassa's {"value": "100.00", "currency": "RUB"} in kopecks; None if not roubles."""
    if not isinstance(amount, dict) or amount.get("currency") != "RUB":
        return None
    try:
        return int(Decimal(str(amount["value"])) * 100)
    except (KeyError, ArithmeticError, ValueError):
        return None


class YooKassaClient:
    def __init__(self, base_url: str, shop_id: str, secret_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        token = base64.b64encode(f"{shop_id}:{secret_key}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(headers=self._headers, timeout=TIMEOUT)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def create(
        self,
        *,
        idempotence_key: str,
        amount_kop: int,
        description: str,
        return_url: str,
        metadata: dict[str, str],
        receipt: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "amount": {"value": rubles(amount_kop), "currency": "RUB"},
            "capture": True,
            "confirmation": {"type": "redirect", "return_url": return_url},
            "description": description[:128],
            "metadata": metadata,
        }
        if receipt is not None:
            body["receipt"] = receipt
        return await self._call("POST", "/payments", body, {"Idempotence-Key": idempotence_key})

    async def refund(
        self,
        *,
        idempotence_key: str,
        payment_id: str,
        amount_kop: int,
        description: str,
        receipt: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create (or, with the same key, look up) a refund of a succeeded payment."""
        body: dict[str, Any] = {
            "payment_id": payment_id,
            "amount": {"value": rubles(amount_kop), "currency": "RUB"},
            "description": description[:250],
        }
        if receipt is not None:
            body["receipt"] = receipt
        return await self._call("POST", "/refunds", body, {"Idempotence-Key": idempotence_key})

    async def get(self, payment_id: str) -> dict[str, Any] | None:
        """The payment as YooKassa holds it; None when YooKassa does not know the id.

        The id comes from a notification anyone can post: only YooKassa's id format goes into
        the path (quoted as well), so `../` or a query cannot reach another endpoint."""
        if not is_payment_id(payment_id):
            return None
        try:
            return await self._call("GET", f"/payments/{quote(payment_id, safe='')}")
        except YooKassaError as error:
            if "404" in str(error):
                return None
            raise

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        assert self._http is not None, "start() first"
        try:
            async with self._http.request(
                method, self.base_url + path, json=body, headers=headers
            ) as response:
                try:
                    answer = await response.json(content_type=None)
                except ValueError as error:
                    raise YooKassaError(f"{response.status}: not JSON") from error
                if response.status >= 400 or not isinstance(answer, dict):
                    code = answer.get("code") if isinstance(answer, dict) else None
                    refused = response.status if response.status >= 400 else None
                    raise YooKassaError(f"{response.status} {code or ''}".strip(), refused)
                return answer
        except (aiohttp.ClientError, TimeoutError) as error:
            raise YooKassaError(f"unreachable: {error.__class__.__name__}") from error


def _receipt(
    rules: ReceiptRules | None, contact: Contact | None, item: str, amount_kop: int
) -> dict[str, Any] | None:
    """The 54-ФЗ receipt of a payment or a refund, None when receipts are off. The item is
    always in Russian: a fiscal document, whatever the user's language."""
    if rules is None or contact is None:
        return None
    return receipt(rules, contact, t("ru", item, amount=format_money(amount_kop)), amount_kop)


class CardPayments(RefundSteps):
    """Card / SBP top-ups: create, settle from a fetched payment, check what is pending
    (a `HostedCheckout`)."""

    method = "yookassa"
    notification_path = "/yookassa/notification"

    def __init__(
        self,
        payments: PaymentService,
        client: YooKassaClient,
        api: BotApi,
        sender: Sender,
        settings: PaymentsSettings,
    ) -> None:
        self.payments = payments
        self.client = client
        self.api = api
        self.sender = sender
        self.settings = settings
        self.allowed_networks = YOOKASSA_NETWORKS if settings.yookassa_check_ip else ()

    def amounts_rub(self) -> tuple[int, ...]:
        return tuple(self.settings.topup_amounts_rub)

    @property
    def rules(self) -> ReceiptRules | None:
        """The shop's receipt codes, None when receipts are off (YOOKASSA_RECEIPTS)."""
        settings = self.settings
        if not settings.yookassa_receipts:
            return None
        return ReceiptRules(
            vat_code=settings.yookassa_vat_code,
            payment_mode=settings.yookassa_payment_mode,
            payment_subject=settings.yookassa_payment_subject,
            tax_system_code=settings.yookassa_tax_system_code,
        )

    async def receipt_contact(self, user_id: int) -> Contact | None:
        """Where this user's receipt goes: their own contact, else the operator's default."""
        own = Contact.load(await self.payments.receipt_contact(user_id))
        default = self.settings.yookassa_receipt_email
        return own or (Contact("email", default) if default else None)

    async def start(
        self, *, user_id: int, chat_id: int, lang: str, amount_kop: int, cid: str | None
    ) -> PaymentView:
        """A payment and its YooKassa link. With receipts on, `ReceiptContactMissing` when
        the user has given no contact and the operator no default (ask, then call again)."""
        rules = self.rules
        contact = await self.receipt_contact(user_id) if rules is not None else None
        if rules is not None and contact is None:
            raise ReceiptContactMissing
        payment = await self.payments.create(
            user_id=user_id,
            chat_id=chat_id,
            lang=lang,
            method="yookassa",
            amount_kop=amount_kop,
            receipt_contact=contact.dump() if contact is not None else None,
            cid=cid,
        )
        username = await self.api.username()
        created = await self.client.create(
            idempotence_key=payment.id,
            amount_kop=amount_kop,
            description=t(lang, "pay.stars_title", amount=format_money(amount_kop)),
            return_url=f"https://t.me/{username}",
            metadata={"payment_id": payment.id, "user_id": str(user_id)},
            receipt=_receipt(rules, contact, "pay.receipt_item", amount_kop),
        )
        url = (created.get("confirmation") or {}).get("confirmation_url")
        if not isinstance(created.get("id"), str) or not isinstance(url, str):
            raise YooKassaError("no payment id or confirmation URL in the answer")
        await self.payments.set_external(payment.id, created["id"], url)
        updated = await self.payments.get(payment.id)
        assert updated is not None
        return updated

    async def on_notification(self, body: Any) -> str:
        """Handle a notification by re-fetching its payment; returns what happened."""
        obj = body.get("object") if isinstance(body, dict) else None
        external_id = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(external_id, str) or not is_payment_id(external_id):
            return "invalid"
        fetched = await self.client.get(external_id)
        if fetched is None:
            self._refused(f"notification for a payment YooKassa does not know ({external_id})")
            return "unknown"
        return await self.settle(fetched)

    async def settle(self, fetched: dict[str, Any]) -> str:
        external_id = str(fetched.get("id", ""))
        payment = await self.payments.by_external("yookassa", external_id)
        if payment is None:
            self._refused(f"YooKassa payment {external_id} is not ours")
            return "unknown"
        status = fetched.get("status")
        if status == "succeeded":
            if kopecks_of(fetched.get("amount", {})) != payment.amount_kop or not fetched.get(
                "paid", True
            ):
                self._refused(f"YooKassa payment {external_id}: amount differs from ours")
                return "mismatch"
            credit = await self.payments.credit(payment.id, external_id=external_id, memo=MEMO)
            await tell_credited(self.payments, self.sender, credit)
            return "credited" if credit.created else "repeated"
        if status == "canceled":
            reason = (fetched.get("cancellation_details") or {}).get("reason", "")
            closed = await self.payments.close(payment.id, "canceled", detail=str(reason))
            if closed is not None:
                amount = format_money(payment.amount_kop)
                await notify(
                    self.sender,
                    payment.chat_id,
                    t(payment.lang, "pay.card_canceled", amount=amount),
                )
            return "canceled"
        return "pending"

    async def _settle_refund(self, payment: PaymentView, cid: str | None) -> str:
        """Ask YooKassa for the refund of a REFUNDING payment; decide on a definite answer.

        The idempotence key names the attempt, so a request repeated after a timeout, a 5xx or
        a crash finds the refund the first one made instead of making a second. A 4xx is
        checked against the payment itself (`refunded_amount`): the key's 24 hours may have
        passed after a refund that did go through."""
        assert payment.external_id is not None
        attempt = await self.payments.refund_attempt(payment.id)
        # The payment's receipt went there; a payment from before receipts were on gets the
        # user's present contact.
        contact = Contact.load(payment.receipt_contact) or await self.receipt_contact(
            payment.user_id
        )
        try:
            refund = await self.client.refund(
                idempotence_key=f"{payment.id}:refund:{attempt}",
                payment_id=payment.external_id,
                amount_kop=payment.amount_kop,
                description=t(payment.lang, "pay.refund_reason"),
                receipt=_receipt(
                    self.rules, contact, "pay.receipt_refund_item", payment.amount_kop
                ),
            )
        except YooKassaError as error:
            log.warning("yookassa_refund_failed", payment_id=payment.id, error=str(error)[:200])
            outcome = await self._refunded_already(payment) if error.definite else UNCLEAR
        else:
            status = refund.get("status")
            outcome = (
                REFUNDED_NOW
                if status == "succeeded"
                else REFUSED
                if status == "canceled"
                else UNCLEAR
            )
        return await settle_refund(self.payments, self.sender, payment, outcome, cid)

    async def _refunded_already(self, payment: PaymentView) -> str:
        """After a refusal: refunded if YooKassa shows the amount refunded, else refused."""
        assert payment.external_id is not None
        try:
            fetched = await self.client.get(payment.external_id)
        except YooKassaError:
            return UNCLEAR
        if fetched is None:
            return REFUSED
        refunded = kopecks_of(fetched.get("refunded_amount") or {}) or 0
        return REFUNDED_NOW if refunded >= payment.amount_kop else REFUSED

    async def check_pending(self) -> int:
        """Settle every pending payment old enough to have been paid; how many changed."""
        changed = 0
        for payment in await self.payments.pending("yookassa", older_than_s=CHECK_AFTER_S):
            if payment.external_id is None:
                continue
            fetched = await self.client.get(payment.external_id)
            if fetched is not None and await self.settle(fetched) in ("credited", "canceled"):
                changed += 1
        return changed

    async def run(self, stop: asyncio.Event) -> None:
        """Check pending payments every minute or so until `stop` (ACTIVE only)."""
        interval = min(60.0, self.settings.reconcile_interval_s)
        while not stop.is_set():
            # At once on taking the lead (a refund left open by a crash is finished promptly),
            # then every interval.
            try:
                changed = await self.check_pending()
                if changed:
                    log.warning("yookassa_pending_settled", count=changed)
                settled = await self.resume_refunds()
                if settled:
                    log.warning("yookassa_refunds_settled", count=settled)
            except YooKassaError as error:
                log.warning("yookassa_check_failed", error=str(error)[:200])
            except Exception:  # a bug here must not stop the ACTIVE work
                log.exception("yookassa_check_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def _refused(self, detail: str) -> None:
        log.warning("yookassa_notification_refused", reason_detail=detail)
        telemetry.emit(
            Event.PAYMENT_REJECTED,
            cid=new_cid(),
            method="yookassa",
            reason_code=Reason.ACCESS_DENIED.value,
            reason_detail=detail,
        )


async def build(context: ProviderContext) -> CardPayments | None:
    """The provider, when the shop is configured (YOOKASSA_SHOP_ID, YOOKASSA_SECRET_KEY)."""
    settings = context.settings
    if not settings.yookassa_enabled:
        return None
    assert settings.yookassa_shop_id is not None
    assert settings.yookassa_secret_key is not None
    client = YooKassaClient(
        settings.yookassa_api_base,
        settings.yookassa_shop_id,
        settings.yookassa_secret_key.get_secret_value(),
    )
    await client.start()
    context.stack.push_async_callback(client.close)
    return CardPayments(context.payments, client, context.api, context.sender, settings)
