"""SQLAlchemy table definitions. Rows stay in the data layer; services return plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names keep migrations identical on SQLite and Postgres.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A Telegram user who has talked to the bot; the id is Telegram's user id."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    language: Mapped[str] = mapped_column(String(8), default="ru", server_default="ru")
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )
    last_seen_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )
    is_blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The user blocked the bot (Telegram's 403): broadcasts skip them until they write again.
    blocked_bot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Where 54-ФЗ receipts go: `email:…` or `phone:…` (trt.receipts.Contact), asked once.
    receipt_contact: Mapped[str | None] = mapped_column(String(80))


# --------------------------------------------------------------------------- the ledger
class LedgerAccount(Base):
    """A wallet (one per user) or a system account (revenue, top-up sources, bonuses).

    Counters are kept in the same transaction as the entries that move them (TigerBeetle
    style): `posted_kop` is the sum of the account's entries; `pending_debit_kop` the sum of
    its open holds. Available = posted − pending.
    """

    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"), unique=True)
    posted_kop: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    pending_debit_kop: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )

    __table_args__ = (CheckConstraint("pending_debit_kop >= 0", name="pending_non_negative"),)


class LedgerPosting(Base):
    """One balanced money movement; `idempotency_key` makes replays no-ops."""

    __tablename__ = "ledger_postings"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    memo: Mapped[str] = mapped_column(String(255), default="", server_default="")
    cid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp(), index=True
    )


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    posting_id: Mapped[int] = mapped_column(ForeignKey("ledger_postings.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount_kop: Mapped[int] = mapped_column(BigInteger)  # + credit, − debit


class Hold(Base):
    """Money reserved on a wallet; immutable. Its one resolution lives in `hold_resolutions`."""

    __tablename__ = "holds"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount_kop: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(64))
    cid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)

    __table_args__ = (CheckConstraint("amount_kop > 0", name="amount_positive"),)


class HoldResolution(Base):
    """How a hold ended: captured (fully or partly), released or expired — exactly once."""

    __tablename__ = "hold_resolutions"

    hold_id: Mapped[str] = mapped_column(ForeignKey("holds.id"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16))  # captured | released | expired
    captured_kop: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    posting_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_postings.id"))
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )


# --------------------------------------------------------------------------- generation jobs
class Job(Base):
    """One paid (or free) generation, from confirmation to delivery."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    draft_key: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    lang: Mapped[str] = mapped_column(String(8))
    model_slug: Mapped[str] = mapped_column(String(64))
    family: Mapped[str] = mapped_column(String(16))
    kie_model: Mapped[str] = mapped_column(String(128))
    output_kind: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    price_kop: Mapped[int] = mapped_column(BigInteger)
    is_free: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    hold_id: Mapped[str | None] = mapped_column(ForeignKey("holds.id"))
    status: Mapped[str] = mapped_column(String(16), index=True)
    kie_task_id: Mapped[str | None] = mapped_column(String(128))
    callback_token: Mapped[str] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    download_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    free_day: Mapped[str | None] = mapped_column(String(10))  # the free slot's UTC day
    next_run_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    deadline_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reconcile_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    callback_payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result_urls: Mapped[list[str] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(String(512))
    status_message_id: Mapped[int | None] = mapped_column(BigInteger)
    cid: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp(), index=True
    )
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The prompt as the user typed it, when the assistant's version went to the model instead.
    prompt_original: Mapped[str | None] = mapped_column(Text)


class JobResult(Base):
    """A downloaded result file, kept until delivered; the Telegram file_id after that."""

    __tablename__ = "job_results"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    mime_type: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    telegram_file_id: Mapped[str | None] = mapped_column(String(256))
    sent_as: Mapped[str | None] = mapped_column(String(16))
    duration_s: Mapped[int | None] = mapped_column(Integer)  # a sent video's or audio's length


class Outbox(Base):
    """A message to a user decided in a job transaction; the relay sends it at least once."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    kind: Mapped[str] = mapped_column(String(16))  # running | result | failure | referral
    chat_id: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    outcome: Mapped[str | None] = mapped_column(String(32))
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )

    __table_args__ = (UniqueConstraint("job_id", "kind"),)
    # The columns `fields_for_job` gives, in its order.
    JOB_FIELDS: ClassVar[tuple[str, ...]] = (
        "job_id",
        "kind",
        "chat_id",
        "payload",
        "attempts",
        "next_attempt_at",
        "cid",
        "created_at",
    )

    @classmethod
    def for_job(
        cls, job: Job, kind: str, payload: dict[str, Any], *, chat_id: int | None = None
    ) -> Outbox:
        """A message about `job` to its chat (or `chat_id`), due now (added in the job's
        transaction)."""
        return cls(**cls.fields_for_job(job, kind, payload, chat_id=chat_id))

    @staticmethod
    def fields_for_job(
        job: Job,
        kind: str,
        payload: dict[str, Any],
        *,
        chat_id: int | None = None,
        after_s: float = 0.0,
    ) -> dict[str, Any]:
        """The row's columns (the engine inserts them as parameters of one prepared INSERT),
        due in `after_s`."""
        now = utcnow()
        return {
            "job_id": job.id,
            "kind": kind,
            "chat_id": job.chat_id if chat_id is None else chat_id,
            "payload": payload,
            "attempts": 0,
            "next_attempt_at": now + timedelta(seconds=after_s) if after_s else now,
            "cid": job.cid,
            "created_at": now,
        }


class FreeUsage(Base):
    """Free runs a user took on one UTC day (the daily free quota)."""

    __tablename__ = "free_usage"

    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class KieCallback(Base):
    """Every KIE callback as received (also orphans whose task we cannot match)."""

    __tablename__ = "kie_callbacks"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    task_id: Mapped[str | None] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )


class FsmState(Base):
    """aiogram's conversation state, in the database: survives restarts, shared by instances."""

    __tablename__ = "fsm_states"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )


class EventRow(Base):
    """One telemetry event, kept for `EVENTS_RETENTION_DAYS` (for /debug and /trace)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    cid: Mapped[str | None] = mapped_column(String(64), index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    event: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)


class LeaderLease(Base):
    """Who is ACTIVE for a bot: the holder, a fencing epoch, and an expiry on the database clock.

    `epoch` grows on every acquisition; ACTIVE-only writes check it (see `trt.leadership`), so an
    instance that lost the lease without noticing writes nothing. `expires_at_s` is seconds since
    the Unix epoch as the database reads its own clock (never a host's).
    """

    __tablename__ = "leader_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at_s: Mapped[float] = mapped_column(Float, default=0.0)


class InboxUpdate(Base):
    """A Telegram update taken in by the ACTIVE instance, kept until handled (and a while after).

    The update id is the key: a redelivered update is stored once. Rows are written before the
    update is confirmed to Telegram, so an instance killed mid-handling loses nothing: the next
    ACTIVE instance handles what is left unprocessed.
    """

    __tablename__ = "inbox_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


# --------------------------------------------------------------------------- payments
class Payment(Base):
    """One top-up attempt: Telegram Stars, YooKassa or a manual transfer, from intent to credit.

    The credit itself is a ledger posting keyed by the provider's id (`<method>:<external_id>`),
    so a repeated notification, a redelivered update and the reconciliation all credit once.
    """

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("method", "external_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    lang: Mapped[str] = mapped_column(String(8))
    method: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    amount_kop: Mapped[int] = mapped_column(BigInteger)
    stars: Mapped[int | None] = mapped_column(Integer)
    external_id: Mapped[str | None] = mapped_column(String(128))
    confirmation_url: Mapped[str | None] = mapped_column(String(512))
    receipt_file_id: Mapped[str | None] = mapped_column(String(256))
    # Telegram's file_unique_id of a manual transfer's receipt: one payment per receipt.
    receipt_unique_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    decided_by: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(String(255), default="", server_default="")
    cid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp(), index=True
    )
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )
    # When the user was told of the credit: a crash between the two is mended on the next sight.
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The receipt's customer (a YooKassa payment with 54-ФЗ receipts): its refund's receipt
    # goes to the same contact.
    receipt_contact: Mapped[str | None] = mapped_column(String(80))


class PromoCode(Base):
    __tablename__ = "promo_codes"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    amount_kop: Mapped[int] = mapped_column(BigInteger)
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.current_timestamp()
    )


class PromoRedemption(Base):
    __tablename__ = "promo_redemptions"

    code: Mapped[str] = mapped_column(ForeignKey("promo_codes.code"), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    redeemed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Referral(Base):
    """Who invited whom (`/start ref_<code>`).

    The inviter's bonus is paid (`credited_at`) once the invited user has topped up and spent
    the minimum, and taken back (`reversed_at`) when that user's top-up is refunded."""

    __tablename__ = "referrals"

    invited_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    inviter_id: Mapped[int] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    credited_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reversed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --------------------------------------------------------------------------- operations
class AuditEntry(Base):
    """One admin action: who, what, on what, the value before and after, under which cid."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    admin_id: Mapped[int] = mapped_column(BigInteger, index=True)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(128))
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    cid: Mapped[str | None] = mapped_column(String(64))


class RuntimeSetting(Base):
    """A knob operators turn at runtime (rates, markup, a model on/off or its markup).

    Every instance reads these on start and again whenever `updated_at` moves (within seconds),
    so a change is effective everywhere without a deploy.
    """

    __tablename__ = "runtime_settings"

    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    updated_by: Mapped[int | None] = mapped_column(BigInteger)


class Broadcast(Base):
    """A message to many users, sent at a set rate; its recipients are fixed when it starts."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_by: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(String(4096))
    segment: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)  # draft running paused …
    rate_per_s: Mapped[float] = mapped_column(Float)
    total: Mapped[int] = mapped_column(Integer, default=0)
    progress_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class BroadcastRecipient(Base):
    """One user of a broadcast: pending → sending → sent | failed | blocked | unknown."""

    __tablename__ = "broadcast_recipients"

    broadcast_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("broadcasts.id"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16), index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class PromptAssist(Base):
    """One use of the prompt assistant: what the user wrote and what came back (or that it
    failed). The daily allowance counts these rows, so it holds across instances."""

    __tablename__ = "prompt_assists"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # improve | translate
    model_slug: Mapped[str] = mapped_column(String(64))
    original: Mapped[str] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    ok: Mapped[bool] = mapped_column(Boolean)
    cid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
