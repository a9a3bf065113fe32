"""The presentation: aiogram routers, screens, keyboards, callback data, middlewares.

Talking to the Bot API itself (sending, intake, files) is `trt.telegram`'s."""
