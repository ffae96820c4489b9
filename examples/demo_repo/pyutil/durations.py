import re
from datetime import timedelta

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|w|d|h|m|s)")


def parse_duration(text):
    text = text.strip().lower()
    if not text:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    for match in _PART.finditer(text):
        if text[pos:match.start()].strip():
            raise ValueError(f"unexpected text in duration: {text[pos:match.start()]!r}")
        value, unit = match.groups()
        total += float(value) * _UNITS[unit]
        pos = match.end()
    if text[pos:].strip() or pos == 0:
        raise ValueError(f"cannot parse duration {text!r}")
    return timedelta(seconds=total)


def format_duration(delta):
    seconds = int(delta.total_seconds())
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
