"""A local YooKassa for the sandbox: payments API v3, a checkout page, shop notifications.

What TRT relies on behaves as YooKassa documents it: Basic auth with the shop id and secret key
(401 `invalid_credentials` otherwise), a required `Idempotence-Key` (the same key returns the
same payment), `POST /v3/payments` answering `pending` with a redirect confirmation URL,
`GET /v3/payments/{id}` (404 `not_found` for an unknown id), and an HTTP notification to the
shop's URL (`payment.succeeded` / `payment.canceled`) after the payer acts on the checkout page.

With `receipts_required` (a shop with fiscalisation on) a payment or refund without a valid
54-ФЗ `receipt` is refused as YooKassa refuses it: 400 `invalid_request`, parameter `receipt`,
"Receipt is missing or illegal" — a customer e-mail or phone, 1–100 items each with a
description ≤ 128, a positive quantity, an amount in the payment's currency, `vat_code` 1–12,
`payment_mode` and `payment_subject` from YooKassa's lists, the items summing to the amount,
`tax_system_code` 1–6 when given. Accepted receipts are kept in `receipts`.

Refunds: `POST /v3/refunds` (Idempotence-Key: the same key returns the same refund) of a
succeeded payment up to what is not refunded yet, `GET /v3/refunds/{id}`; the payment shows
`refunded_amount`. Scripted: `refund_status` (what a new refund answers: succeeded, pending,
canceled), `fail_refunds_before` (500, nothing done) and `fail_refunds_after` (the refund is
made, then 500: a request that failed after it took effect); `settle_refund(id, status)`.

For tests: `pay(id)` and `cancel(id)` act as the payer; `notify(id, event)` sends a notification
again (a replay); `fail_creates` makes the next creates answer 500.
"""

from __future__ import annotations

import base64
import html
import json
import secrets
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from trt.receipts import (
    DESCRIPTION_MAX,
    PAYMENT_MODES,
    PAYMENT_SUBJECTS,
    TAX_SYSTEM_CODES,
    VAT_CODES,
    is_email,
)

DEMO_SHOP_ID = "100500"
DEMO_SECRET_KEY = "test_sandbox_yookassa_secret_key"  # noqa: S105 - the sandbox's, public


def _error(status: int, code: str, description: str, parameter: str | None = None) -> web.Response:
    body = {"type": "error", "id": str(uuid.uuid4()), "code": code, "description": description}
    if parameter is not None:
        body["parameter"] = parameter
    return web.json_response(body, status=status)


def _receipt_refused(detail: str) -> web.Response:
    # YooKassa's answer says only this; the detail is for whoever reads the sandbox's log.
    response = _error(400, "invalid_request", "Receipt is missing or illegal", "receipt")
    response.headers["X-Sandbox-Detail"] = detail[:200]
    return response


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def receipt_problem(receipt: Any, amount: Decimal, currency: str) -> str | None:
    """What YooKassa would refuse in a 54-ФЗ receipt for `amount`, None when it is valid."""
    if not isinstance(receipt, dict):
        return "no receipt"
    customer = receipt.get("customer") or {}
    email = customer.get("email", receipt.get("email")) if isinstance(customer, dict) else None
    phone = customer.get("phone", receipt.get("phone")) if isinstance(customer, dict) else None
    if not (isinstance(email, str) and is_email(email)) and not (
        isinstance(phone, str) and phone.isdigit() and 10 <= len(phone) <= 15
    ):
        return "customer e-mail or phone missing or malformed"
    items = receipt.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= 100:
        return "1 to 100 items expected"
    total = Decimal(0)
    for item in items:
        if not isinstance(item, dict):
            return "an item is not an object"
        description = item.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= DESCRIPTION_MAX:
            return "item description missing or longer than 128"
        quantity = _decimal(item.get("quantity"))
        raw_amount = item.get("amount")
        item_amount: dict[str, Any] = raw_amount if isinstance(raw_amount, dict) else {}
        value = _decimal(item_amount.get("value"))
        if quantity is None or quantity <= 0 or value is None or value < 0:
            return "item quantity or amount invalid"
        if item_amount.get("currency") != currency:
            return "item currency differs from the payment's"
        if not isinstance(item.get("vat_code"), int) or item["vat_code"] not in VAT_CODES:
            return "vat_code 1-12 expected"
        if item.get("payment_mode") not in PAYMENT_MODES:
            return "payment_mode missing or unknown"
        if item.get("payment_subject") not in PAYMENT_SUBJECTS:
            return "payment_subject missing or unknown"
        total += value * quantity
    if total.quantize(Decimal("0.01")) != amount.quantize(Decimal("0.01")):
        return f"items sum to {total}, the amount is {amount}"
    code = receipt.get("tax_system_code")
    if code is not None and (not isinstance(code, int) or code not in TAX_SYSTEM_CODES):
        return "tax_system_code 1-6 expected"
    return None


class YooKassaServer:
    def __init__(self, shop_id: str = DEMO_SHOP_ID, secret_key: str = DEMO_SECRET_KEY) -> None:
        self.shop_id = shop_id
        self.secret_key = secret_key
        self.payments: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.notification_url: str | None = None  # the shop's setting in YooKassa's dashboard
        self.notifications: list[dict[str, Any]] = []  # what was sent, with the answer status
        self.fail_creates = 0
        self.receipts_required = False  # the shop has 54-ФЗ fiscalisation on
        self.receipts: list[dict[str, Any]] = []  # accepted: {kind, id, receipt}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.refund_keys: dict[str, str] = {}
        self.refund_status = "succeeded"
        self.fail_refunds_before = 0
        self.fail_refunds_after = 0
        self.base_url = ""
        self._http: ClientSession | None = None
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API call, for tests
        self.app = web.Application(middlewares=[self._record])
        self.app.router.add_post("/v3/payments", self._create)
        self.app.router.add_get("/v3/payments/{id}", self._get)
        self.app.router.add_post("/v3/refunds", self._refund)
        self.app.router.add_get("/v3/refunds/{id}", self._get_refund)
        self.app.router.add_get("/checkout/{id}", self._checkout)
        self.app.router.add_post("/checkout/{id}/{action}", self._act)
        self.app.on_cleanup.append(self._cleanup)

    # -- the API -------------------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/v3/"):
            self.requests.append((request.method, request.raw_path))
        response: web.StreamResponse = await handler(request)
        return response

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return secrets.compare_digest(user, self.shop_id) and secrets.compare_digest(
            password, self.secret_key
        )

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "invalid_credentials", "Authentication error")
        key = request.headers.get("Idempotence-Key")
        if not key:
            return _error(400, "invalid_request", "Idempotence-Key header is required")
        if key in self.by_key:
            return web.json_response(self.payments[self.by_key[key]])
        if self.fail_creates > 0:
            self.fail_creates -= 1
            return _error(500, "internal_server_error", "Scripted failure")
        try:
            body = await request.json()
            value = Decimal(str(body["amount"]["value"]))
            currency = body["amount"]["currency"]
            return_url = body["confirmation"]["return_url"]
        except (ValueError, KeyError, TypeError, InvalidOperation):
            return _error(400, "invalid_request", "amount and confirmation are required")
        if value <= 0 or currency != "RUB":
            return _error(400, "invalid_request", "Invalid amount")
        if "receipt" in body or self.receipts_required:
            problem = receipt_problem(body.get("receipt"), value, currency)
            if problem is not None:
                return _receipt_refused(problem)
        payment_id = str(uuid.uuid4())
        payment = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": {"value": f"{value:.2f}", "currency": currency},
            "confirmation": {
                "type": "redirect",
                "return_url": return_url,
                "confirmation_url": f"{self.base_url}/checkout/{payment_id}",
            },
            "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "description": body.get("description", ""),
            "metadata": body.get("metadata", {}),
            "recipient": {"account_id": self.shop_id, "gateway_id": "sandbox"},
            "refundable": False,
            "test": True,
        }
        self.payments[payment_id] = payment
        self.by_key[key] = payment_id
        if "receipt" in body:
            self.receipts.append({"kind": "payment", "id": payment_id, "receipt": body["receipt"]})
        return web.json_response(payment)

    async def _refund(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "invalid_credentials", "Authentication error")
        key = request.headers.get("Idempotence-Key")
        if not key:
            return _error(400, "invalid_request", "Idempotence-Key header is required")
        if key in self.refund_keys:
            return web.json_response(self.refunds[self.refund_keys[key]])
        if self.fail_refunds_before > 0:
            self.fail_refunds_before -= 1
            return _error(500, "internal_server_error", "Scripted failure")
        try:
            body = await request.json()
            payment = self.payments[str(body["payment_id"])]
            value = Decimal(str(body["amount"]["value"]))
            currency = body["amount"]["currency"]
        except (ValueError, KeyError, TypeError, InvalidOperation):
            return _error(400, "invalid_request", "payment_id and amount are required")
        refunded = Decimal(payment.get("refunded_amount", {}).get("value", "0"))
        paid = Decimal(payment["amount"]["value"])
        if payment["status"] != "succeeded":
            return _error(400, "invalid_request", "Payment is not succeeded", "payment_id")
        if value <= 0 or currency != "RUB" or refunded + value > paid:
            return _error(400, "invalid_request", "Refund amount exceeds the payment", "amount")
        if "receipt" in body or self.receipts_required:
            problem = receipt_problem(body.get("receipt"), value, currency)
            if problem is not None:
                return _receipt_refused(problem)
        refund = {
            "id": str(uuid.uuid4()),
            "payment_id": payment["id"],
            "status": "pending",
            "amount": {"value": f"{value:.2f}", "currency": currency},
            "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "description": body.get("description", ""),
        }
        self.refunds[refund["id"]] = refund
        self.refund_keys[key] = refund["id"]
        if "receipt" in body:
            self.receipts.append({"kind": "refund", "id": refund["id"], "receipt": body["receipt"]})
        self.settle_refund(refund["id"], self.refund_status)
        if self.fail_refunds_after > 0:
            self.fail_refunds_after -= 1
            return _error(500, "internal_server_error", "Scripted failure after the refund")
        return web.json_response(refund)

    def settle_refund(self, refund_id: str, status: str) -> dict[str, Any]:
        """Move a pending refund to `status`; a succeeded one counts on its payment."""
        refund = self.refunds[refund_id]
        if refund["status"] != "pending" or status == "pending":
            return refund
        refund["status"] = status
        if status == "succeeded":
            payment = self.payments[refund["payment_id"]]
            before = Decimal(payment.get("refunded_amount", {}).get("value", "0"))
            total = before + Decimal(refund["amount"]["value"])
            payment["refunded_amount"] = {"value": f"{total:.2f}", "currency": "RUB"}
        else:
            refund["cancellation_details"] = {"party": "yoo_money", "reason": "rejected_by_payee"}
        return refund

    async def _get_refund(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "invalid_credentials", "Authentication error")
        refund = self.refunds.get(request.match_info["id"])
        if refund is None:
            return _error(404, "not_found", "Refund not found")
        return web.json_response(refund)

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "invalid_credentials", "Authentication error")
        payment = self.payments.get(request.match_info["id"])
        if payment is None:
            return _error(404, "not_found", "Payment not found")
        return web.json_response(payment)

    # -- the payer's side ---------------------------------------------------------------------
    async def _checkout(self, request: web.Request) -> web.Response:
        payment = self.payments.get(request.match_info["id"])
        if payment is None:
            return web.Response(status=404, text="Payment not found")
        amount = html.escape(payment["amount"]["value"])
        pid = html.escape(payment["id"])
        status = html.escape(payment["status"])
        page = f"""<!doctype html><html lang="ru"><head><meta charset="utf-8">
<title>ЮKassa (sandbox)</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:3em auto">
<h2>ЮKassa · песочница</h2><p>{html.escape(payment["description"])}</p>
<p>К оплате: <b>{amount} ₽</b> · статус: <span id="status">{status}</span></p>
<form method="post" action="/checkout/{pid}/pay"><button id="pay">Оплатить</button></form>
<form method="post" action="/checkout/{pid}/cancel"><button id="cancel">Отменить</button></form>
</body></html>"""
        return web.Response(text=page, content_type="text/html")

    async def _act(self, request: web.Request) -> web.Response:
        payment_id, action = request.match_info["id"], request.match_info["action"]
        if payment_id not in self.payments or action not in ("pay", "cancel"):
            return web.Response(status=404, text="Payment not found")
        payment = await (self.pay(payment_id) if action == "pay" else self.cancel(payment_id))
        # Real YooKassa redirects to the return URL (the bot in Telegram); offline, a page
        # that says what happened and links there serves the person in the web chat better.
        done = "Оплачено" if payment["status"] == "succeeded" else "Платёж отменён"
        back = html.escape(payment["confirmation"]["return_url"])
        page = f"""<!doctype html><html lang="ru"><head><meta charset="utf-8">
<title>ЮKassa (sandbox)</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:3em auto">
<h2 id="result">{done}</h2><p>Вернитесь в чат с ботом — сообщение уже там.</p>
<p><a href="{back}">{back}</a></p></body></html>"""
        return web.Response(text=page, content_type="text/html")

    async def pay(self, payment_id: str) -> dict[str, Any]:
        """The payer pays: succeeded (once), then the shop is notified."""
        payment = self.payments[payment_id]
        if payment["status"] == "pending":
            payment.update(
                status="succeeded",
                paid=True,
                refundable=True,
                captured_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            )
            await self.notify(payment_id, "payment.succeeded")
        return payment

    async def cancel(self, payment_id: str) -> dict[str, Any]:
        """The payer gives up: canceled (once), then the shop is notified."""
        payment = self.payments[payment_id]
        if payment["status"] == "pending":
            payment.update(
                status="canceled",
                cancellation_details={"party": "yoo_money", "reason": "canceled_by_merchant"},
            )
            await self.notify(payment_id, "payment.canceled")
        return payment

    async def notify(self, payment_id: str, event: str) -> int | None:
        """POST the notification to the shop's URL; the shop's HTTP status (None: unreachable)."""
        if self.notification_url is None:
            return None
        body = {"type": "notification", "event": event, "object": self.payments[payment_id]}
        if self._http is None:
            self._http = ClientSession(timeout=ClientTimeout(total=10))
        try:
            async with self._http.post(
                self.notification_url,
                data=json.dumps(body),
                headers={"Content-Type": "application/json"},
            ) as response:
                status: int | None = response.status
        except (OSError, ClientError, TimeoutError):
            status = None
        self.notifications.append({"event": event, "payment_id": payment_id, "status": status})
        return status

    async def _cleanup(self, _app: web.Application) -> None:
        if self._http is not None:
            await self._http.close()
