"""Runtime configuration: one settings class per concern, composed into one frozen `Config`.

Variable names and defaults follow the runtime contract in DESIGN.md; they are fixed because
tools and docs depend on them. Every class reads the process environment and `.env`.
Loading collects every problem of every class before failing, so an operator fixes the whole
configuration in one go (`ConfigError` lists each variable and why).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from trt.errors import TrtError
from trt.receipts import PAYMENT_MODES, PAYMENT_SUBJECTS, is_email

ENV_FILE = ".env"


def _settings_config(prefix: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
    )


class BotMode(StrEnum):
    POLLING = "polling"
    WEBHOOK = "webhook"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class TelegramSettings(BaseSettings):
    """How TRT reaches Telegram and how Telegram reaches TRT."""

    model_config = _settings_config()

    bot_token: SecretStr | None = Field(default=None, validation_alias="BOT_TOKEN")
    api_base: str = Field(default="https://api.telegram.org", validation_alias="TELEGRAM_API_BASE")
    mode: BotMode = Field(default=BotMode.POLLING, validation_alias="BOT_MODE")
    webhook_secret: SecretStr | None = Field(default=None, validation_alias="WEBHOOK_SECRET")
    support_contact: str = Field(default="@trt_support", validation_alias="SUPPORT_CONTACT")
    user_rate_limit_per_10s: int = Field(
        default=40, ge=1, le=100_000, validation_alias="USER_RATE_LIMIT_PER_10S"
    )

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value().strip()
        if not raw:
            return None
        bot_id, sep, secret = raw.partition(":")
        if not sep or not bot_id.isdigit() or len(secret) < 8:
            raise ValueError("must look like '123456789:AA…' (bot id, colon, secret)")
        return SecretStr(raw)

    @field_validator("api_base")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("webhook_secret")
    @classmethod
    def _secret_charset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        raw = value.get_secret_value()
        allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
        if not 1 <= len(raw) <= 256 or not set(raw) <= allowed:
            raise ValueError("1-256 characters, only A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @property
    def bot_id(self) -> int | None:
        """The numeric bot id, which is the part of the token before the colon."""
        if self.bot_token is None:
            return None
        return int(self.bot_token.get_secret_value().split(":", 1)[0])

    def effective_webhook_secret(self) -> SecretStr | None:
        """`WEBHOOK_SECRET`, or one derived from the token so restarts agree without config."""
        if self.webhook_secret is not None:
            return self.webhook_secret
        if self.bot_token is None:
            return None
        digest = hashlib.sha256(b"trt-webhook:" + self.bot_token.get_secret_value().encode())
        return SecretStr(digest.hexdigest()[:48])


class HttpSettings(BaseSettings):
    """The aiohttp server: Telegram webhook, KIE callback, health and metrics."""

    model_config = _settings_config()

    host: str = Field(default="127.0.0.1", validation_alias="HTTP_HOST")
    port: int = Field(
        default=8080, ge=0, le=65535, validation_alias=AliasChoices("HTTP_PORT", "PORT")
    )
    public_base_url: str | None = Field(default=None, validation_alias="PUBLIC_BASE_URL")
    # `/metrics` shows revenue and wallet totals: with a token it takes `Authorization: Bearer
    # <token>`, without one it answers loopback callers only.
    metrics_token: SecretStr | None = Field(default=None, validation_alias="METRICS_TOKEN")

    @field_validator("metrics_token")
    @classmethod
    def _blank_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @field_validator("public_base_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _http_url(value)


class DatabaseSettings(BaseSettings):
    """Where TRT keeps its state."""

    model_config = _settings_config()

    url: str = Field(default="sqlite+aiosqlite:///./trt.db", validation_alias="DATABASE_URL")

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class KieSettings(BaseSettings):
    """KIE.ai, the API in front of the generation models."""

    model_config = _settings_config("KIE_")

    api_key: SecretStr | None = None
    creates_per_10s: int = Field(default=18, ge=1, le=100_000)  # KIE allows 20 / 10 s
    records_per_s: int = Field(default=8, ge=1, le=100_000)  # KIE allows 10 / s
    base_url: str = "https://api.kie.ai"
    upload_base_url: str = "https://kieai.redpandaai.co"
    webhook_hmac_key: SecretStr | None = None

    @field_validator("base_url", "upload_base_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("api_key", "webhook_hmac_key")
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return value


class PricingSettings(BaseSettings):
    """How a KIE cost in USD becomes a price in roubles."""

    model_config = _settings_config()

    usd_rub_rate: Decimal = Field(
        default=Decimal("95"), gt=0, le=10_000, validation_alias="USD_RUB_RATE"
    )
    price_markup: Decimal = Field(
        default=Decimal("2.0"), ge=1, le=100, validation_alias="PRICE_MARKUP"
    )
    free_daily_quota: int = Field(default=3, ge=0, le=1000, validation_alias="FREE_DAILY_QUOTA")


class EngineSettings(BaseSettings):
    """The generation engine: limits, deadlines, polling, workers."""

    model_config = _settings_config("JOB_")

    max_active_per_user: int = Field(default=2, ge=1, le=100_000)
    max_in_flight: int = Field(default=200, ge=1, le=100_000)
    deadline_factor: float = Field(default=4.0, gt=0, le=100)  # × the model's typical time
    deadline_min_s: float = Field(default=300, gt=0)
    deadline_max_s: float = Field(default=1800, gt=0)
    reconcile_window_s: float = Field(default=180, gt=0)  # wait for a lost create's callback
    poll_scale: float = Field(default=1.0, gt=0, le=100)  # stretches KIE's polling schedule
    workers: int = Field(default=8, ge=1, le=256)  # jobs advanced concurrently per process
    lease_s: float = Field(default=60, gt=0)
    idle_poll_s: float = Field(default=0.5, gt=0)  # how often an idle worker looks for work
    outbox_retry_s: float = Field(default=5.0, gt=0)  # n-th retry of a failed send after n × this
    # A result up to this size is downloaded and sent as a file (the Bot API takes 50 MB); a
    # larger one is sent as a link.
    max_result_mb: int = Field(default=50, ge=1, le=2000)


@dataclass(frozen=True, slots=True)
class StarsPackage:
    """A Telegram Stars top-up: `stars` paid, `rubles` credited."""

    stars: int
    rubles: int


def _one_of(value: str, allowed: frozenset[str], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(sorted(allowed))}, got {value!r}")
    return value


def _int_list(value: Any, name: str) -> Any:
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if not all(part.isdigit() and int(part) > 0 for part in parts):
            raise ValueError(f"comma-separated positive whole {name} expected, got {value!r}")
        return tuple(int(part) for part in parts)
    return value


class PaymentsSettings(BaseSettings):
    """Top-ups: Stars packages, YooKassa (when configured), manual transfers, bonuses."""

    model_config = _settings_config()

    stars_packages: Annotated[tuple[StarsPackage, ...], NoDecode] = Field(
        default=(
            StarsPackage(50, 90),
            StarsPackage(100, 180),
            StarsPackage(250, 450),
            StarsPackage(500, 900),
        ),
        validation_alias="STARS_PACKAGES",
    )
    # Amounts offered for card / SBP (YooKassa) and manual transfers, in roubles.
    topup_amounts_rub: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(100, 300, 500, 1000), validation_alias="TOPUP_AMOUNTS_RUB"
    )
    yookassa_shop_id: str | None = Field(default=None, validation_alias="YOOKASSA_SHOP_ID")
    yookassa_secret_key: SecretStr | None = Field(
        default=None, validation_alias="YOOKASSA_SECRET_KEY"
    )
    yookassa_api_base: str = Field(
        default="https://api.yookassa.ru/v3", validation_alias="YOOKASSA_API_BASE"
    )
    # Notifications only from YooKassa's published addresses (docs/operations.md#security).
    yookassa_check_ip: bool = Field(default=False, validation_alias="YOOKASSA_CHECK_IP")
    # 54-ФЗ receipts (docs/payments.md#receipts): on for a shop with fiscalisation enabled.
    yookassa_receipts: bool = Field(default=False, validation_alias="YOOKASSA_RECEIPTS")
    # YooKassa's codes: vat_code 1 = «без НДС»; the tax system only when the shop has several.
    yookassa_vat_code: int = Field(default=1, ge=1, le=12, validation_alias="YOOKASSA_VAT_CODE")
    yookassa_tax_system_code: int | None = Field(
        default=None, ge=1, le=6, validation_alias="YOOKASSA_TAX_SYSTEM_CODE"
    )
    # A top-up is an advance for services not yet chosen: «аванс», «платёж».
    yookassa_payment_mode: str = Field(default="advance", validation_alias="YOOKASSA_PAYMENT_MODE")
    yookassa_payment_subject: str = Field(
        default="payment", validation_alias="YOOKASSA_PAYMENT_SUBJECT"
    )
    # Where receipts go for users who gave no e-mail or phone (else each user is asked once).
    yookassa_receipt_email: str | None = Field(
        default=None, validation_alias="YOOKASSA_RECEIPT_EMAIL"
    )
    manual_transfer_details: str | None = Field(
        default=None, validation_alias="MANUAL_TRANSFER_DETAILS"
    )
    welcome_bonus_rub: int = Field(
        default=0, ge=0, le=100_000, validation_alias="WELCOME_BONUS_RUB"
    )
    referral_bonus_rub: int = Field(
        default=50, ge=0, le=100_000, validation_alias="REFERRAL_BONUS_RUB"
    )
    # The inviter's bonus is paid once the invited user has topped up and spent this much on
    # generations (a top-up alone, refunded later, earns nothing), at most this often per
    # inviter.
    referral_min_spend_rub: int = Field(
        default=100, ge=0, le=100_000, validation_alias="REFERRAL_MIN_SPEND_RUB"
    )
    referral_max_per_inviter: int = Field(
        default=50, ge=0, le=100_000, validation_alias="REFERRAL_MAX_PER_INVITER"
    )
    reconcile_interval_s: float = Field(
        default=300, ge=5, le=86_400, validation_alias="PAYMENTS_RECONCILE_S"
    )

    @field_validator("stars_packages", mode="before")
    @classmethod
    def _packages(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        packages = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            stars, sep, rubles = part.partition(":")
            if not (sep and stars.strip().isdigit() and rubles.strip().isdigit()):
                raise ValueError(f"'STARS:RUBLES,…' expected (e.g. '50:90,100:180'), got {part!r}")
            if int(stars) < 1 or int(rubles) < 1:
                raise ValueError(f"amounts must be positive, got {part!r}")
            packages.append(StarsPackage(int(stars), int(rubles)))
        return tuple(packages)

    @field_validator("topup_amounts_rub", mode="before")
    @classmethod
    def _amounts(cls, value: Any) -> Any:
        return _int_list(value, "rouble amounts")

    @field_validator("yookassa_api_base")
    @classmethod
    def _yookassa_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("yookassa_shop_id", "manual_transfer_details", "yookassa_receipt_email")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("yookassa_tax_system_code", mode="before")
    @classmethod
    def _blank_code(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("yookassa_payment_mode")
    @classmethod
    def _payment_mode(cls, value: str) -> str:
        return _one_of(value.strip(), PAYMENT_MODES, "YOOKASSA_PAYMENT_MODE")

    @field_validator("yookassa_payment_subject")
    @classmethod
    def _payment_subject(cls, value: str) -> str:
        return _one_of(value.strip(), PAYMENT_SUBJECTS, "YOOKASSA_PAYMENT_SUBJECT")

    @model_validator(mode="after")
    def _receipt_email(self) -> PaymentsSettings:
        if self.yookassa_receipt_email is not None and not is_email(self.yookassa_receipt_email):
            raise ValueError("YOOKASSA_RECEIPT_EMAIL is not an e-mail address")
        return self

    @property
    def yookassa_enabled(self) -> bool:
        return self.yookassa_shop_id is not None and self.yookassa_secret_key is not None


class LeadershipSettings(BaseSettings):
    """One ACTIVE instance per bot: how long a lease lasts, how the handover drains."""

    model_config = _settings_config("LEADER_")

    # A crashed leader is replaced within this; renewed every min(2 s, TTL / 3).
    lease_ttl_s: float = Field(default=10.0, ge=3, le=15)
    # On SIGTERM: how long in-flight handling and job steps may finish before the lease goes.
    drain_s: float = Field(default=10.0, ge=0, le=60)


class AdminSettings(BaseSettings):
    """Who may operate TRT from inside Telegram."""

    model_config = _settings_config()

    admin_ids: Annotated[frozenset[int], NoDecode] = Field(
        default=frozenset(), validation_alias="ADMIN_IDS"
    )
    broadcast_rate_per_s: float = Field(
        default=25.0, gt=0, le=1000, validation_alias="BROADCAST_RATE_PER_S"
    )
    alert_kie_low_credits: int = Field(default=1000, ge=0, validation_alias="ALERT_KIE_LOW_CREDITS")
    alert_failure_rate: float = Field(
        default=0.3, gt=0, le=1, validation_alias="ALERT_FAILURE_RATE"
    )
    alert_cooldown_s: float = Field(default=3600, ge=60, validation_alias="ALERT_COOLDOWN_S")

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            bad = [part for part in parts if not part.lstrip("-").isdigit()]
            if bad:
                raise ValueError(f"comma-separated Telegram user ids expected, got {bad!r}")
            return frozenset(int(part) for part in parts)
        return value


class AssistantSettings(BaseSettings):
    """The prompt assistant (✨ Улучшить промпт, RU → EN for models that want English)."""

    model_config = _settings_config("PROMPT_ASSISTANT_")

    enabled: bool = True
    # A KIE chat model, as its path names it: POST {KIE_BASE_URL}/{model}/v1/chat/completions.
    model: str = Field(default="gemini-3-flash", pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$")
    daily: int = Field(default=20, ge=0, le=10_000)  # free uses per user per (UTC) day
    per_minute: int = Field(default=5, ge=1, le=1000)  # attempts per user per minute
    timeout_s: float = Field(default=20.0, gt=0, le=120)


class LoggingSettings(BaseSettings):
    """Log output. Format unset means JSON under `trt run`, console in a terminal."""

    model_config = _settings_config("LOG_")

    format: LogFormat | None = None
    level: str = "INFO"
    events_retention_days: float = Field(
        default=14, gt=0, le=3650, validation_alias="EVENTS_RETENTION_DAYS"
    )

    @field_validator("format", mode="before")
    @classmethod
    def _blank_format(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return value or None
        return value

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level


SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    TelegramSettings,
    HttpSettings,
    DatabaseSettings,
    KieSettings,
    PricingSettings,
    EngineSettings,
    LeadershipSettings,
    PaymentsSettings,
    AdminSettings,
    LoggingSettings,
    AssistantSettings,
)

# Variables `trt run` cannot do without; other commands (config, migrate, demo) run without them.
RUN_REQUIRED = ("BOT_TOKEN", "KIE_API_KEY")


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    variable: str
    reason: str


class ConfigError(TrtError):
    """The configuration cannot be used; `problems` names each variable and why."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        lines = [f"  {p.variable}: {p.reason}" for p in problems]
        super().__init__("Configuration is invalid:\n" + "\n".join(lines))


@dataclass(frozen=True, slots=True)
class Config:
    """Everything TRT reads from its environment, validated and frozen."""

    telegram: TelegramSettings
    http: HttpSettings
    database: DatabaseSettings
    kie: KieSettings
    pricing: PricingSettings
    engine: EngineSettings
    leadership: LeadershipSettings
    payments: PaymentsSettings
    admin: AdminSettings
    logging: LoggingSettings
    assistant: AssistantSettings

    def require(self, variables: tuple[str, ...] = RUN_REQUIRED) -> None:
        """Raise `ConfigError` naming every listed variable that is unset."""
        present = {
            "BOT_TOKEN": self.telegram.bot_token is not None,
            "KIE_API_KEY": self.kie.api_key is not None,
        }
        missing = [
            ConfigProblem(name, "is required for `trt run` and is not set")
            for name in variables
            if not present.get(name, True)
        ]
        if missing:
            raise ConfigError(missing)

    def secrets(self) -> list[str]:
        """Every secret value, so log output can be scrubbed of them."""
        values = [
            self.telegram.bot_token,
            self.telegram.effective_webhook_secret(),
            self.kie.api_key,
            self.kie.webhook_hmac_key,
            self.payments.yookassa_secret_key,
            self.http.metrics_token,
        ]
        return [v.get_secret_value() for v in values if v is not None]

    def masked(self) -> dict[str, str]:
        """The effective configuration by variable name, secrets masked."""
        return {
            "BOT_TOKEN": _mask(self.telegram.bot_token),
            "TELEGRAM_API_BASE": self.telegram.api_base,
            "BOT_MODE": self.telegram.mode.value,
            "PUBLIC_BASE_URL": self.http.public_base_url or "(unset: no callbacks, KIE is polled)",
            "WEBHOOK_SECRET": _mask(self.telegram.webhook_secret)
            if self.telegram.webhook_secret
            else ("(derived from BOT_TOKEN)" if self.telegram.bot_token else "(unset)"),
            "SUPPORT_CONTACT": self.telegram.support_contact,
            "USER_RATE_LIMIT_PER_10S": str(self.telegram.user_rate_limit_per_10s),
            "HTTP_HOST": self.http.host,
            "HTTP_PORT": str(self.http.port),
            "METRICS_TOKEN": _mask(self.http.metrics_token)
            if self.http.metrics_token
            else "(unset: /metrics answers loopback only)",
            "DATABASE_URL": mask_database_url(self.database.url),
            "KIE_API_KEY": _mask(self.kie.api_key),
            "KIE_BASE_URL": self.kie.base_url,
            "KIE_UPLOAD_BASE_URL": self.kie.upload_base_url,
            "KIE_WEBHOOK_HMAC_KEY": _mask(self.kie.webhook_hmac_key),
            "KIE_CREATES_PER_10S": str(self.kie.creates_per_10s),
            "KIE_RECORDS_PER_S": str(self.kie.records_per_s),
            "ADMIN_IDS": ",".join(str(i) for i in sorted(self.admin.admin_ids)) or "(none)",
            "USD_RUB_RATE": str(self.pricing.usd_rub_rate),
            "PRICE_MARKUP": str(self.pricing.price_markup),
            "FREE_DAILY_QUOTA": str(self.pricing.free_daily_quota),
            **{
                f"JOB_{name.upper()}": str(getattr(self.engine, name))
                for name in EngineSettings.model_fields
            },
            **{
                f"LEADER_{name.upper()}": str(getattr(self.leadership, name))
                for name in LeadershipSettings.model_fields
            },
            "STARS_PACKAGES": ",".join(
                f"{p.stars}:{p.rubles}" for p in self.payments.stars_packages
            ),
            "TOPUP_AMOUNTS_RUB": ",".join(str(a) for a in self.payments.topup_amounts_rub),
            "YOOKASSA_SHOP_ID": self.payments.yookassa_shop_id or "(unset: card payments off)",
            "YOOKASSA_SECRET_KEY": _mask(self.payments.yookassa_secret_key),
            "YOOKASSA_API_BASE": self.payments.yookassa_api_base,
            "YOOKASSA_CHECK_IP": str(self.payments.yookassa_check_ip).lower(),
            "MANUAL_TRANSFER_DETAILS": "(set)"
            if self.payments.manual_transfer_details
            else "(unset: manual transfers off)",
            "YOOKASSA_RECEIPTS": str(self.payments.yookassa_receipts).lower(),
            "YOOKASSA_VAT_CODE": str(self.payments.yookassa_vat_code),
            "YOOKASSA_TAX_SYSTEM_CODE": str(self.payments.yookassa_tax_system_code or "(unset)"),
            "YOOKASSA_PAYMENT_MODE": self.payments.yookassa_payment_mode,
            "YOOKASSA_PAYMENT_SUBJECT": self.payments.yookassa_payment_subject,
            "YOOKASSA_RECEIPT_EMAIL": "(set)"
            if self.payments.yookassa_receipt_email
            else "(unset: each user gives one)",
            "WELCOME_BONUS_RUB": str(self.payments.welcome_bonus_rub),
            "REFERRAL_BONUS_RUB": str(self.payments.referral_bonus_rub),
            "REFERRAL_MIN_SPEND_RUB": str(self.payments.referral_min_spend_rub),
            "REFERRAL_MAX_PER_INVITER": str(self.payments.referral_max_per_inviter),
            "PAYMENTS_RECONCILE_S": str(self.payments.reconcile_interval_s),
            **{
                f"PROMPT_ASSISTANT_{name.upper()}": str(getattr(self.assistant, name))
                for name in AssistantSettings.model_fields
            },
            "LOG_FORMAT": self.logging.format.value if self.logging.format else "(auto)",
            "LOG_LEVEL": self.logging.level,
            "EVENTS_RETENTION_DAYS": str(self.logging.events_retention_days),
        }


def load_config(**overrides: dict[str, Any]) -> Config:
    """Read every settings class; raise one `ConfigError` listing all problems.

    `overrides` maps a `Config` field name (e.g. ``"database"``) to init values for that class,
    which take precedence over the environment (used by `trt demo` and tests).
    """
    built: dict[str, BaseSettings] = {}
    problems: list[ConfigProblem] = []
    for field_name, cls in zip(Config.__dataclass_fields__, SETTINGS_CLASSES, strict=True):
        try:
            built[field_name] = cls(**overrides.get(field_name, {}))
        except ValidationError as exc:
            problems.extend(_problems_from(cls, exc))
    telegram = built.get("telegram")
    http = built.get("http")
    if (
        isinstance(telegram, TelegramSettings)
        and isinstance(http, HttpSettings)
        and telegram.mode is BotMode.WEBHOOK
        and http.public_base_url is None
    ):
        problems.append(
            ConfigProblem("BOT_MODE", "webhook mode needs PUBLIC_BASE_URL (where Telegram posts)")
        )
    problems.extend(_cross_checks(built))
    if problems:
        raise ConfigError(problems)
    return Config(**built)  # type: ignore[arg-type]


def _cross_checks(built: dict[str, BaseSettings]) -> list[ConfigProblem]:
    """Rules between settings of different concerns."""
    problems = []
    http, kie = built.get("http"), built.get("kie")
    payments, admin = built.get("payments"), built.get("admin")
    if (
        isinstance(http, HttpSettings)
        and isinstance(kie, KieSettings)
        and http.public_base_url is not None
        and kie.webhook_hmac_key is None
    ):
        # The callback endpoint is public then: unsigned callbacks could be forged by anyone.
        problems.append(
            ConfigProblem(
                "KIE_WEBHOOK_HMAC_KEY",
                "is required when PUBLIC_BASE_URL is set (KIE callbacks must be signed)",
            )
        )
    if (
        isinstance(payments, PaymentsSettings)
        and isinstance(admin, AdminSettings)
        and payments.manual_transfer_details
        and not admin.admin_ids
    ):
        problems.append(
            ConfigProblem(
                "MANUAL_TRANSFER_DETAILS",
                "needs ADMIN_IDS: the receipts of manual transfers go to the admins",
            )
        )
    return problems


def _problems_from(cls: type[BaseSettings], exc: ValidationError) -> list[ConfigProblem]:
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    problems = []
    for error in exc.errors(include_url=False):
        loc = str(error["loc"][0]) if error["loc"] else "?"
        field = cls.model_fields.get(loc)
        if field is not None and isinstance(field.validation_alias, str):
            variable = field.validation_alias
        elif field is not None and isinstance(field.validation_alias, AliasChoices):
            variable = str(field.validation_alias.choices[0])
        elif loc in cls.model_fields:
            variable = prefix + loc.upper()
        else:
            variable = loc.upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        shown = "" if variable.endswith(("TOKEN", "KEY", "SECRET")) else f" (got {value!r})"
        problems.append(ConfigProblem(variable, message + shown))
    return problems


def normalize_database_url(url: str) -> str:
    """Accept the URL a PaaS hands out (`postgres://…`) and choose the async driver."""
    url = url.strip()
    for plain in ("postgres://", "postgresql://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise ValueError("use sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db")


def mask_database_url(url: str) -> str:
    """The URL with its password replaced, for logs and `trt config`."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, location = rest.rpartition("@")
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}{at}{location}"


def _http_url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _mask(secret: SecretStr | None) -> str:
    if secret is None:
        return "(unset)"
    return "*** (set)"
