from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from trt.config import BotMode, ConfigError, LogFormat, load_config, normalize_database_url

TOKEN = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def test_defaults_follow_the_runtime_contract() -> None:
    config = load_config()
    assert config.telegram.bot_token is None
    assert config.telegram.api_base == "https://api.telegram.org"
    assert config.telegram.mode is BotMode.POLLING
    assert config.http.public_base_url is None
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)
    assert config.database.url == "sqlite+aiosqlite:///./trt.db"
    assert config.kie.base_url == "https://api.kie.ai"
    assert config.kie.upload_base_url == "https://kieai.redpandaai.co"
    assert config.kie.webhook_hmac_key is None
    assert config.admin.admin_ids == frozenset()
    assert config.pricing.usd_rub_rate == Decimal("95")
    assert config.pricing.price_markup == Decimal("2.0")
    assert config.logging.format is None
    assert config.logging.level == "INFO"


def test_every_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE": "http://127.0.0.1:8081/",
        "BOT_MODE": "webhook",
        "PUBLIC_BASE_URL": "https://trt.example",
        "WEBHOOK_SECRET": "s3cret_value-1",
        "HTTP_HOST": "0.0.0.0",
        "HTTP_PORT": "9000",
        "DATABASE_URL": "postgres://u:p@db:5432/trt",
        "KIE_API_KEY": "kie-key-123456",
        "KIE_BASE_URL": "http://127.0.0.1:8082",
        "KIE_UPLOAD_BASE_URL": "http://127.0.0.1:8083",
        "KIE_WEBHOOK_HMAC_KEY": "hmac-key-123456",
        "ADMIN_IDS": "1, 22,333",
        "USD_RUB_RATE": "101.5",
        "PRICE_MARKUP": "1.8",
        "LOG_FORMAT": "console",
        "LOG_LEVEL": "debug",
        "LEADER_LEASE_TTL_S": "6",
        "LEADER_DRAIN_S": "4",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_config()
    assert config.telegram.bot_id == 123456
    assert config.telegram.api_base == "http://127.0.0.1:8081"
    assert config.telegram.mode is BotMode.WEBHOOK
    assert config.http.public_base_url == "https://trt.example"
    assert config.http.port == 9000
    assert config.database.url == "postgresql+asyncpg://u:p@db:5432/trt"
    assert config.admin.admin_ids == frozenset({1, 22, 333})
    assert config.pricing.usd_rub_rate == Decimal("101.5")
    assert config.logging.format is LogFormat.CONSOLE
    assert config.logging.level == "DEBUG"
    assert (config.leadership.lease_ttl_s, config.leadership.drain_s) == (6, 4)
    config.require()  # both run-time secrets present


def test_webhook_mode_needs_a_public_url_and_the_lease_a_bounded_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOT_MODE", "webhook")
    monkeypatch.setenv("LEADER_LEASE_TTL_S", "60")
    with pytest.raises(ConfigError) as caught:
        load_config()
    reasons = {problem.variable: problem.reason for problem in caught.value.problems}
    assert set(reasons) == {"BOT_MODE", "LEADER_LEASE_TTL_S"}
    assert "PUBLIC_BASE_URL" in reasons["BOT_MODE"]


def test_port_falls_back_to_paas_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "10000")
    assert load_config().http.port == 10000
    monkeypatch.setenv("HTTP_PORT", "9001")
    assert load_config().http.port == 9001


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"BOT_TOKEN={TOKEN}\nADMIN_IDS=7\n", encoding="utf-8")
    config = load_config()
    assert config.telegram.bot_id == 123456
    assert config.admin.admin_ids == frozenset({7})


def test_all_bad_variables_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_MODE", "carrier-pigeon")
    monkeypatch.setenv("HTTP_PORT", "70000")
    monkeypatch.setenv("USD_RUB_RATE", "-1")
    monkeypatch.setenv("ADMIN_IDS", "1,bob")
    monkeypatch.setenv("BOT_TOKEN", "not-a-token")
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    with pytest.raises(ConfigError) as caught:
        load_config()
    named = {problem.variable for problem in caught.value.problems}
    assert named == {
        "BOT_MODE",
        "HTTP_PORT",
        "USD_RUB_RATE",
        "ADMIN_IDS",
        "BOT_TOKEN",
        "DATABASE_URL",
    }
    # A bad secret is named but its value is never echoed back.
    assert "not-a-token" not in str(caught.value)
    assert "carrier-pigeon" in str(caught.value)


def test_require_names_each_missing_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config().require()
    assert [p.variable for p in caught.value.problems] == ["BOT_TOKEN", "KIE_API_KEY"]


def test_masked_view_hides_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("KIE_API_KEY", "kie-secret-value-42")
    monkeypatch.setenv("KIE_WEBHOOK_HMAC_KEY", "hmac-secret-value-42")
    monkeypatch.setenv("DATABASE_URL", "postgresql://trt:dbpassword@db/trt")
    config = load_config()
    shown = "\n".join(config.masked().values())
    for secret in (TOKEN, "kie-secret-value-42", "hmac-secret-value-42", "dbpassword"):
        assert secret not in shown
    assert "postgresql+asyncpg://trt:***@db/trt" in shown
    assert set(config.secrets()) >= {TOKEN, "kie-secret-value-42", "hmac-secret-value-42"}


def test_webhook_secret_is_derived_stably_within_telegram_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    first = load_config().telegram.effective_webhook_secret()
    second = load_config().telegram.effective_webhook_secret()
    assert first is not None
    assert second is not None
    assert first.get_secret_value() == second.get_secret_value()
    assert first.get_secret_value().isalnum()
    assert TOKEN not in first.get_secret_value()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_url_normalisation(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_public_callbacks_need_a_signing_key_and_transfers_need_admins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A public callback URL without a key let anyone post results; transfer receipts without
    # admins went nowhere while the user was told "received".
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://trt.example")
    monkeypatch.setenv("MANUAL_TRANSFER_DETAILS", "Bank, card 0000")
    with pytest.raises(ConfigError) as caught:
        load_config()
    reasons = {problem.variable: problem.reason for problem in caught.value.problems}
    assert set(reasons) == {"KIE_WEBHOOK_HMAC_KEY", "MANUAL_TRANSFER_DETAILS"}
    assert "PUBLIC_BASE_URL" in reasons["KIE_WEBHOOK_HMAC_KEY"]
    assert "ADMIN_IDS" in reasons["MANUAL_TRANSFER_DETAILS"]
    monkeypatch.setenv("KIE_WEBHOOK_HMAC_KEY", "hmac-key-123456")
    monkeypatch.setenv("ADMIN_IDS", "1")
    monkeypatch.setenv("METRICS_TOKEN", "metrics-token-1234")
    config = load_config()
    assert "metrics-token-1234" in config.secrets()  # scrubbed from logs like the others
    assert config.masked()["METRICS_TOKEN"] == "*** (set)"
