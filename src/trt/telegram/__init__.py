"""The adapter to the Bot API: the one sender, the update intake, users' files, Stars calls.

Only this package and bot/ (the presentation) import aiogram. Everything below speaks in
TRT's own terms: `Sender` with `RetryLater` / `Undeliverable`, `UpdateInbox`, `BotFiles`.
"""
