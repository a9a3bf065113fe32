"""The seam for payment providers: what TRT needs from one, and the registry that holds them.

A provider is one module in this package (`stars.py`, `yookassa.py`) with a class that meets
`PaymentProvider` and a `build(context)` that returns it (or None when it is not configured);
`registry.REGISTERED` lists the builds. Everything else derives from the registry: the top-up
screen's methods, the admin's refund, the ACTIVE instance's reconciliation loops, the HTTP
notification endpoints, the ledger's source account (`topup:<method>`).

Money is the same for every provider and stays in `PaymentService` (the ledger's owner): a
payment is created pending, credited once by the provider's own id, refunded by reversing the
credit first (`RefundSteps`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any, ClassVar, Protocol, runtime_checkable

from trt.config import PaymentsSettings
from trt.errors import TrtError
from trt.payments.service import PaymentService, PaymentView
from trt.receipts import Contact, ReceiptRules
from trt.telegram.api import BotApi
from trt.telegram.sender import Sender


class ProviderError(TrtError):
    """The provider could not be reached or refused the request.

    `definite` is True when the provider answered no (a 4xx), False when the request may
    still have taken effect (a timeout, a 5xx): only a definite answer decides money."""

    def __init__(self, message: str, *, definite: bool = False) -> None:
        super().__init__(message)
        self.definite = definite


class ReceiptContactMissing(TrtError):
    """Receipts are on and nobody said where this user's goes: ask, then start again."""


@runtime_checkable
class PaymentProvider(Protocol):
    """A way to take money: its payments are refunded and reconciled by the provider."""

    method: ClassVar[str]  # Payment.method; the ledger's source account is `topup:<method>`

    async def refund(self, payment_id: str, *, cid: str | None = None) -> PaymentView:
        """The credit reversed, then the money sent back (`RefundSteps.refund`)."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """The provider's own loop on the ACTIVE instance: reconcile, settle open refunds."""
        ...


@runtime_checkable
class HostedCheckout(PaymentProvider, Protocol):
    """A provider whose user pays on the provider's page: an amount, a link, a notification.

    The bot's card screens serve every such provider: the amounts, the receipt contact when
    `rules` is set (54-ФЗ), the link; `notification_path` is served by web/ and handed to
    `on_notification`, which must fetch the truth from the provider's API."""

    notification_path: ClassVar[str]
    allowed_networks: tuple[IPv4Network | IPv6Network, ...]  # () admits any caller

    @property
    def rules(self) -> ReceiptRules | None: ...

    def amounts_rub(self) -> tuple[int, ...]: ...

    async def receipt_contact(self, user_id: int) -> Contact | None: ...

    async def start(
        self, *, user_id: int, chat_id: int, lang: str, amount_kop: int, cid: str | None
    ) -> PaymentView:
        """A pending payment with its `confirmation_url`; `ReceiptContactMissing` or
        `ProviderError`."""
        ...

    async def on_notification(self, body: Any) -> str:
        """What happened ("credited", "pending", "invalid", ...); `ProviderError` when the
        provider cannot be asked now (the notification is then delivered again)."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a provider's `build` gets: its settings, the money service, Telegram, and the
    exit stack its clients are closed by."""

    settings: PaymentsSettings
    payments: PaymentService
    api: BotApi
    sender: Sender
    stack: contextlib.AsyncExitStack


Build = Callable[[ProviderContext], Awaitable[PaymentProvider | None]]


class Providers:
    """The registered providers that are configured, by method."""

    def __init__(self, providers: Iterable[PaymentProvider]) -> None:
        self._by_method: dict[str, PaymentProvider] = {}
        for provider in providers:
            assert provider.method not in self._by_method, f"{provider.method} twice"
            self._by_method[provider.method] = provider

    def __iter__(self) -> Iterator[PaymentProvider]:
        return iter(self._by_method.values())

    def get(self, method: str) -> PaymentProvider | None:
        return self._by_method.get(method)

    def hosted(self, method: str) -> HostedCheckout | None:
        provider = self._by_method.get(method)
        return provider if isinstance(provider, HostedCheckout) else None

    @property
    def checkouts(self) -> list[HostedCheckout]:
        """The providers with a hosted page, in registration order (the top-up screen's)."""
        return [p for p in self._by_method.values() if isinstance(p, HostedCheckout)]
