"""The Telegram side: aiogram routers, middlewares, callback data, keyboards."""
