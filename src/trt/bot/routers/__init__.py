"""One router per screen family; `trt.bot.app` composes them in order, fallback last."""
