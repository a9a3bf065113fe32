"""Real media for the sandbox: PNGs drawn from the prompt, small valid video and audio files."""

from __future__ import annotations

import hashlib
import io
import textwrap
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SAMPLES_DIR = Path(__file__).with_name("samples")
# A font with Cyrillic glyphs where the system has one (Debian's fonts-dejavu-core).
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in _FONT_CANDIDATES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size=size)


@cache
def sample(name: str) -> bytes:
    """One of the shipped sample files: sample.mp4, sample.mp3, sample.ogg."""
    return (SAMPLES_DIR / name).read_bytes()


def render_png(prompt: str, width: int = 512, height: int = 512, *, label: str = "") -> bytes:
    """A PNG whose colours derive from the prompt and which shows the prompt's text."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    top = (digest[0], digest[1], digest[2])
    bottom = (digest[3], digest[4], digest[5])
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        mix = y / max(height - 1, 1)
        colour = tuple(int(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=colour)
    font = _font(max(12, width // 24))
    wrapped = textwrap.fill(prompt[:300] or "…", width=max(10, width // 16))
    if label:
        wrapped = f"{label}\n\n{wrapped}"
    draw.multiline_text(
        (16, 16),
        wrapped,
        fill=(255, 255, 255),
        font=font,
        spacing=6,
        stroke_width=2,
        stroke_fill=(0, 0, 0),
    )
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # fast: the sandbox serves many
    return out.getvalue()
