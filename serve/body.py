"""Reading a large `POST /predict` body without holding up the service.

A C parser such as `json.loads` holds the interpreter lock until it is done: on a 10 MiB body,
long enough that nothing else (not even `/health`) answers meanwhile, even from a worker thread.
`read_body` decodes the same JSON with the same decoder (`json.JSONDecoder.raw_decode`), one
top-level value at a time and one lead of a batch at a time, so the lock changes hands between
them, and it stops at the first lead over the batch limit instead of reading on.
"""

from __future__ import annotations

import json
import re
from typing import Any

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
BATCH_KEY = "leads"


class TooManyLeads(ValueError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"at most {limit} leads")


def read_body(raw: bytes, max_leads: int) -> Any:
    """The JSON value of `raw`, as `json.loads` reads it; `TooManyLeads` as soon as the batch's
    lead list holds more than `max_leads`; `json.JSONDecodeError` (or `UnicodeDecodeError`) for
    what is not JSON."""
    text = raw.decode("utf-8")
    at = _skip(text, 0)
    if not text.startswith("{", at):  # not an object: validation will say what is wrong
        value, at = _DECODER.raw_decode(text, at)
        return _finished(text, at, value)
    found: dict[str, Any] = {}
    at = _skip(text, at + 1)
    if text.startswith("}", at):
        return _finished(text, at + 1, found)
    while True:
        key, at = _DECODER.raw_decode(text, at)
        if not isinstance(key, str):
            raise json.JSONDecodeError(
                "Expecting property name enclosed in double quotes", text, at
            )
        at = _expect(text, at, ":")
        if key == BATCH_KEY and text.startswith("[", at):
            found[key], at = _read_leads(text, at, max_leads)
        else:
            found[key], at = _DECODER.raw_decode(text, at)
        at = _skip(text, at)
        if text.startswith(",", at):
            at = _skip(text, at + 1)
        elif text.startswith("}", at):
            return _finished(text, at + 1, found)
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, at)


def _read_leads(text: str, at: int, max_leads: int) -> tuple[list[Any], int]:
    leads: list[Any] = []
    at = _skip(text, at + 1)
    if text.startswith("]", at):
        return leads, at + 1
    while True:
        if len(leads) == max_leads:
            raise TooManyLeads(max_leads)
        lead, at = _DECODER.raw_decode(text, at)
        leads.append(lead)
        at = _skip(text, at)
        if text.startswith(",", at):
            at = _skip(text, at + 1)
        elif text.startswith("]", at):
            return leads, at + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, at)


def _skip(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _expect(text: str, at: int, char: str) -> int:
    at = _skip(text, at)
    if not text.startswith(char, at):
        raise json.JSONDecodeError(f"Expecting '{char}' delimiter", text, at)
    return _skip(text, at + 1)


def _finished(text: str, at: int, value: Any) -> Any:
    if _skip(text, at) != len(text):
        raise json.JSONDecodeError("Extra data", text, _skip(text, at))
    return value
