"""TRT: AI generation in Telegram, paid from a rouble balance."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trt")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
