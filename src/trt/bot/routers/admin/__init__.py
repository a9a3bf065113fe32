"""The operator's panel inside Telegram: /admin, stats with a chart, users, catalogue knobs, jobs,
broadcasts, one module per feature.

Every handler here runs behind `AdminOnly` (a middleware on this router): a command or a
callback from anyone not in `ADMIN_IDS` — callback data can be forged by any client — gets a
polite refusal, changes nothing and is logged ACCESS_DENIED. Every change is audited.
"""

from __future__ import annotations

from trt.bot.routers.admin.broadcasts import progress_screen
from trt.bot.routers.admin.common import ADMIN_COMMANDS, Admin, AdminOnly
from trt.bot.routers.admin.panel import build

__all__ = ["ADMIN_COMMANDS", "Admin", "AdminOnly", "build", "progress_screen"]
