"""The sandbox's multipart parts: named as aiohttp names them, each header parsed once."""

from __future__ import annotations

import pytest

from trt.sandbox.multipart import part_names


@pytest.mark.parametrize(
    ("header", "names"),
    [
        ('form-data; name="chat_id"', ("chat_id", None)),
        ('form-data; name="photo"; filename="a b.png"', ("photo", "a b.png")),
        (
            "form-data; name=\"doc\"; filename*=UTF-8''%D1%84%D0%BE%D1%82%D0%BE.txt",
            ("doc", "фото.txt"),
        ),
        ('form-data; name="media"; filename="x\\"y.jpg"', ("media", 'x"y.jpg')),
        ("form-data", (None, None)),
        (None, (None, None)),
    ],
)
def test_a_parts_name_and_filename(
    header: str | None, names: tuple[str | None, str | None]
) -> None:
    assert part_names(header) == names


def test_a_header_seen_again_is_not_parsed_again() -> None:
    part_names.cache_clear()
    for _ in range(5):
        part_names('form-data; name="caption"')
    info = part_names.cache_info()
    assert (info.misses, info.hits) == (1, 4)
