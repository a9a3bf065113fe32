"""The app factory: one Bot, one Dispatcher with its routers and middlewares, composed here."""

from __future__ import annotations

from collections.abc import Callable

from aiogram import Bot, Dispatcher, Router, methods
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.dispatcher.event.handler import FilterObject
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError
from aiogram.methods.base import Response
from aiogram.types import BotCommand, BotCommandScopeDefault

from trt.admin.broadcast import BroadcastService
from trt.admin.operations import Operations
from trt.admin.settings import RuntimeSettings
from trt.assistant import PromptAssistant
from trt.billing.wallets import WalletService
from trt.bot.callbacks import check_budget
from trt.bot.flow import FlowServices
from trt.bot.middlewares import (
    AnswerFirstMiddleware,
    AnswerTimingMiddleware,
    CorrelationMiddleware,
    ErrorMiddleware,
    PassiveMiddleware,
    RateLimitMiddleware,
    UserMiddleware,
)
from trt.bot.routers import account, admin, assist, catalog, fallback, generate, start, support
from trt.bot.routers import jobs as jobs_router
from trt.bot.routers import payments as payments_router
from trt.bot.storage import SqlStorage
from trt.config import Config
from trt.db.database import Database
from trt.i18n import LANGUAGES, t
from trt.jobs.service import JobService
from trt.kie.client import KieClient
from trt.logs import get_logger, scrub
from trt.payments.bonuses import BonusService
from trt.payments.providers import Providers
from trt.payments.service import PaymentService
from trt.payments.stars import StarsPayments
from trt.pipeline import UnifiedModelPipeline
from trt.telegram.sender import Sender
from trt.telemetry.store import EventStore
from trt.users import UserService

log = get_logger(__name__)
COMMANDS = (
    "start",
    "help",
    "balance",
    "history",
    "promo",
    "terms",
    "debug",
    "cancel",
    "language",
)
# aiogram validates every answer as `Response[<the method's result type>]`; pydantic keeps those
# parametrized classes in a weak cache, so without a reference they are garbage-collected and
# rebuilt (ms each): the methods this bot calls on every update keep theirs (docs/performance.md).
_RESPONSE_TYPES = [
    Response[method.__returning__]  # type: ignore[name-defined]
    for method in (
        methods.AnswerCallbackQuery,
        methods.EditMessageText,
        methods.EditMessageReplyMarkup,
        methods.SendMessage,
        methods.SendPhoto,
        methods.SendVideo,
        methods.SendAudio,
        methods.SendDocument,
        methods.SendMediaGroup,
        methods.SendChatAction,
        methods.DeleteMessage,
        methods.SendInvoice,
        methods.AnswerPreCheckoutQuery,
        methods.GetFile,
    )
]


def create_bot(config: Config) -> Bot:
    """A Bot talking HTML to the configured Bot API server (Telegram, self-hosted, sandbox)."""
    token = config.telegram.bot_token
    assert token is not None, "BOT_TOKEN is checked by Config.require()"
    session = AiohttpSession(api=TelegramAPIServer.from_base(config.telegram.api_base))
    session.middleware(AnswerTimingMiddleware())
    return Bot(
        token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


def create_dispatcher(
    config: Config,
    database: Database,
    pipeline: UnifiedModelPipeline,
    jobs: JobService,
    sender: Sender,
    events: EventStore,
    *,
    is_active: Callable[[], bool],
    payments: PaymentService,
    stars: StarsPayments,
    bonuses: BonusService,
    providers: Providers,
    runtime: RuntimeSettings,
    broadcasts: BroadcastService,
    kie: KieClient | None = None,
    users: UserService | None = None,
    storage: SqlStorage | None = None,
) -> Dispatcher:
    """Routers in order, fallback last; app-wide objects injected into every handler."""
    check_budget(pipeline.catalog)
    users = users or UserService(database)
    wallets = WalletService(database)
    dispatcher = Dispatcher(
        storage=storage or SqlStorage(database),
        config=config,
        database=database,
        pipeline=pipeline,
        jobs=jobs,
        sender=sender,
        users=users,
        wallets=wallets,
        events=events,
        payments=payments,
        stars=stars,
        bonuses=bonuses,
        providers=providers,
        runtime=runtime,
        operations=Operations(database, users),
        kie=kie,
        broadcasts=broadcasts,
        flow=FlowServices(
            pipeline, jobs, wallets, PromptAssistant(database, kie, config.assistant)
        ),
    )
    # Order matters: the cid first (every later line carries it), then the PASSIVE check (a
    # deploy overlap: answered at once, nothing written), errors next (they answer with the
    # cid), then the user's row and language, then the per-user rate limit.
    dispatcher.update.outer_middleware(CorrelationMiddleware())
    dispatcher.update.outer_middleware(PassiveMiddleware(is_active))
    dispatcher.update.outer_middleware(ErrorMiddleware())
    dispatcher.update.outer_middleware(UserMiddleware(users, config.telegram.support_contact))
    rate_limit = RateLimitMiddleware(limit=config.telegram.user_rate_limit_per_10s)
    dispatcher.message.outer_middleware(rate_limit)
    dispatcher.callback_query.outer_middleware(rate_limit)
    dispatcher.callback_query.middleware(AnswerFirstMiddleware())
    dispatcher.include_routers(
        start.build(),
        support.build(),
        admin.build(config),  # every handler behind AdminOnly
        account.build(),  # commands (/cancel, /balance, …) win over the flow's text input
        payments_router.build(),  # a payment or a receipt wins over the flow's input too
        catalog.build(),
        assist.build(),  # its flow buttons and the text that edits its offer
        generate.build(),
        jobs_router.build(),
        fallback.build(),
    )
    run_filters_inline(dispatcher)
    return dispatcher


def run_filters_inline(router: Router) -> None:
    """Make every plain-function filter under `router` a coroutine.

    aiogram runs a filter that is not a coroutine (a `State` such as `Flow.collecting`, a
    magic filter such as `F.text`) through `asyncio.to_thread`: a text message that falls
    through the flows to the fallback crossed to a worker thread and back about ten times,
    each crossing paying for the GIL while the event loop is busy. TRT's filters are cheap
    pure checks of the event and the FSM state, so they run on the loop. The callback keeps
    its signature (aiogram picks the arguments it passes by it).
    """
    for each in router.chain_tail:
        for observer in each.observers.values():
            for handler in [observer._handler, *observer.handlers]:  # router-wide filters too
                for check in handler.filters or ():
                    if not check.awaitable:
                        _inline(check)


def _inline(check: FilterObject) -> None:
    plain = check.callback

    async def inline(*args: object, **kwargs: object) -> object:
        return plain(*args, **kwargs)

    check.callback = inline
    check.awaitable = True


async def set_commands(bot: Bot) -> None:
    """The command menu in both languages (Russian is the default scope).

    The menu is cosmetic: Telegram being unreachable is logged and must not stop start-up
    (polling retries on its own)."""
    try:
        for lang in LANGUAGES:
            commands = [
                BotCommand(command=name, description=t(lang, f"commands.{name}"))
                for name in COMMANDS
            ]
            await bot.set_my_commands(
                commands,
                scope=BotCommandScopeDefault(),
                language_code=None if lang == "ru" else lang,
            )
    except TelegramAPIError as error:
        log.warning("set_commands_failed", error=scrub(str(error))[:200])
