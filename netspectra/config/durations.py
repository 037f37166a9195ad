"""Go-style duration strings ("120s", "720h", "1h30m", "250ms"), as Go2NetSpectra configs write them."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: Any) -> float:
    """Seconds in a Go duration string; bare numbers are seconds. Raises ValueError with the reason."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a string like '60s' or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty duration")
        position = 0
        seconds = 0.0
        for match in _PART.finditer(text):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            position = match.end()
        if position != len(text) or position == 0:
            raise ValueError(
                f"{value!r} is not a duration; write e.g. '60s', '1h30m', '250ms' (units ns us ms s m h)"
            )
    else:
        raise ValueError("a duration must be a string like '60s' or a number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Go-style text of a duration, for printing configs back."""
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds * 1000:g}ms"


#: A duration in seconds, read from a Go duration string. ``return_type`` given, or pydantic reads
#: it from format_duration's annotation again for every Duration field of the schema it builds.
Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
