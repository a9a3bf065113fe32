"""The file a Telegram message carries, as the flow sees it (an upload, or a result tapped)."""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.types import Message


@dataclass(frozen=True, slots=True)
class UserFile:
    file_id: str
    size: int | None
    mime: str | None  # as the client declared it; the engine checks the bytes
    duration_s: int | None  # what Telegram reports for video, audio, voice, video notes


def file_of(message: Message) -> UserFile | None:
    """The largest photo, or the video, audio, voice, video note or document sent."""
    if message.photo:
        largest = message.photo[-1]
        return UserFile(largest.file_id, largest.file_size, "image/jpeg", None)
    if message.voice is not None:
        voice = message.voice
        return UserFile(
            voice.file_id, voice.file_size, voice.mime_type or "audio/ogg", voice.duration
        )
    if message.video_note is not None:
        note = message.video_note
        return UserFile(note.file_id, note.file_size, "video/mp4", note.duration)
    for timed in (message.video, message.audio, message.animation):
        if timed is not None:
            return UserFile(timed.file_id, timed.file_size, timed.mime_type, timed.duration)
    if message.document is not None:
        document = message.document
        return UserFile(document.file_id, document.file_size, document.mime_type, None)
    return None
