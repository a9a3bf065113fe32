"""The Bot API calls TRT's services make besides messages: Stars, the bot's name, webhooks.

Services below bot/ see TRT's own types: `StarTransaction`, and `BotApiError` whose
`transient` says whether the call may have failed only for now (network, 5xx, flood control:
it may even have taken effect) or Telegram answered a definite no.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiogram import Bot as Bot  # the types the composition root holds, re-exported
from aiogram import Dispatcher as Dispatcher
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import LabeledPrice

from trt.errors import TrtError
from trt.logs import scrub

_TRANSIENT = (TelegramNetworkError, TelegramServerError, TelegramRetryAfter)


class BotApiError(TrtError):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


@dataclass(frozen=True, slots=True)
class StarTransaction:
    id: str
    amount: int
    outgoing: bool  # a refund or a transfer TRT made (it has a receiver)
    invoice_payload: str | None  # set for a user's payment of an invoice
    user_id: int | None


class BotApi:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def username(self) -> str:
        """The bot's @username (aiogram keeps it after the first getMe)."""
        try:
            me = await self.bot.me()
        except TelegramAPIError as error:
            raise _error(error) from error
        return me.username or ""

    async def send_stars_invoice(
        self, chat_id: int, *, title: str, description: str, payload: str, label: str, stars: int
    ) -> None:
        try:
            await self.bot.send_invoice(
                chat_id,
                title=title[:32],
                description=description,
                payload=payload,
                currency="XTR",
                prices=[LabeledPrice(label=label, amount=stars)],
            )
        except TelegramAPIError as error:
            raise _error(error) from error

    async def star_transactions(self, offset: int, limit: int) -> list[StarTransaction]:
        try:
            answer = await self.bot.get_star_transactions(offset=offset, limit=limit)
        except TelegramAPIError as error:
            raise _error(error) from error
        found = []
        for transaction in answer.transactions:
            source = transaction.source
            user = getattr(source, "user", None)
            found.append(
                StarTransaction(
                    id=transaction.id,
                    amount=transaction.amount,
                    outgoing=transaction.receiver is not None,
                    invoice_payload=getattr(source, "invoice_payload", None),
                    user_id=user.id if user is not None else None,
                )
            )
        return found

    async def refund_star_payment(self, user_id: int, charge_id: str) -> None:
        try:
            await self.bot.refund_star_payment(user_id, charge_id)
        except TelegramAPIError as error:
            raise _error(error) from error

    async def take_webhook(
        self, url: str, *, secret: str | None, allowed_updates: list[str]
    ) -> None:
        """Point Telegram at `url`; pending updates are kept."""
        try:
            await self.bot.set_webhook(
                url,
                secret_token=secret,
                allowed_updates=allowed_updates,
                drop_pending_updates=False,
            )
        except TelegramAPIError as error:
            raise _error(error) from error

    async def take_polling(self) -> None:
        """Clear the webhook so that getUpdates works; pending updates are kept."""
        try:
            await self.bot.delete_webhook(drop_pending_updates=False)
        except TelegramAPIError as error:
            raise _error(error) from error

    async def close(self) -> None:
        await self.bot.session.close()


def _error(error: TelegramAPIError) -> BotApiError:
    if isinstance(error, TelegramNetworkError):
        # Only the kind: a network error's text can name the request URL, which holds the token.
        return BotApiError(type(error).__name__, transient=True)
    return BotApiError(
        f"{type(error).__name__}: {scrub(error.message)}", transient=isinstance(error, _TRANSIENT)
    )
