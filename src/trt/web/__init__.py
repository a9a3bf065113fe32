"""The HTTP server: KIE callbacks, health (later: the Telegram webhook, metrics)."""
