"""Small guards against hostile or unlucky input (issue 18's "should fix" items)."""

from __future__ import annotations

import struct
import time
import zlib

from aiohttp.test_utils import make_mocked_request

from trt.bot.middlewares import PRUNE_AT, RateLimitMiddleware
from trt.kie.callbacks import signature_ok
from trt.media import image_mime, image_size
from trt.payments.yookassa import YOOKASSA_NETWORKS, is_payment_id
from trt.sandbox.kie import kie_signature
from trt.telegram.sender import Sender
from trt.web.app import SlidingWindow, _from_networks, metrics_allowed


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few dozen bytes whose header claims 10 gigapixels (Pillow's decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_no_image() -> None:
    data = bomb_png()
    assert len(data) < 100
    assert image_mime(data) is None  # refused as an input-format error, not a crashed step
    assert image_size(data) is None


def test_callback_timestamps_that_are_no_timestamps_are_refused() -> None:
    body = {"data": {"taskId": "t1"}}
    now = int(time.time())
    good = {
        "X-Webhook-Timestamp": str(now),
        "X-Webhook-Signature": kie_signature("k", "t1", str(now)),
    }
    assert signature_ok(body, good, "k")
    for stamp in ("9" * 5000, "²³", "1e9", "-1", ""):
        headers = {"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": "x"}
        assert not signature_ok(body, headers, "k")  # no exception, no 500


def test_yookassa_ids_and_addresses() -> None:
    assert is_payment_id("2419a771-000f-5000-9000-1edaf29243f2")
    for bad in ("x", "../../v3/refunds", "2419a771-000f-5000-9000-1edaf29243f2/../x", ""):
        assert not is_payment_id(bad)

    made = make_mocked_request("POST", "/", headers={"X-Forwarded-For": "1.2.3.4, 185.71.76.5"})
    assert _from_networks(made, YOOKASSA_NETWORKS)  # the proxy's hop: YooKassa's address
    made = make_mocked_request("POST", "/", headers={"X-Forwarded-For": "185.71.76.5, 1.2.3.4"})
    assert not _from_networks(made, YOOKASSA_NETWORKS)  # a claimed address is not trusted


def test_a_public_endpoint_window_admits_a_bounded_rate() -> None:
    window = SlidingWindow(3, 60.0)
    assert [window.admit() for _ in range(5)] == [True, True, True, False, False]


def test_metrics_need_the_token_when_one_is_set() -> None:
    plain = make_mocked_request("GET", "/metrics")
    assert not metrics_allowed(plain, "secret-token")
    right = make_mocked_request("GET", "/metrics", headers={"Authorization": "Bearer secret-token"})
    assert metrics_allowed(right, "secret-token")
    forwarded = make_mocked_request("GET", "/metrics", headers={"X-Forwarded-For": "8.8.8.8"})
    assert not metrics_allowed(forwarded, None)  # through a proxy: not the loopback caller


async def test_per_user_state_stays_bounded() -> None:
    limiter = RateLimitMiddleware(limit=40, window_s=0.0001)
    now = time.monotonic()
    for user in range(PRUNE_AT * 3):
        limiter._seen[user].append(now - 1)
        if len(limiter._seen) > limiter._prune_at:
            limiter._forget_quiet(time.monotonic())
    assert len(limiter._seen) <= PRUNE_AT + 1

    sender = Sender(bot=None, per_chat_interval_s=0.0)  # type: ignore[arg-type]
    for chat in range(PRUNE_AT * 3):
        await sender._pace(chat)
    assert len(sender._next_slot) <= PRUNE_AT + 1
