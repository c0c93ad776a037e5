"""An audit entry's payload as facts a person reads: `key: value` lines, never Python's dict text.

The log lists fifty entries a page, so there each entry shows at most FACTS_SHOWN keys and each value at
most VALUE_CHARS characters (the entry's own page shows them all); the stored payload is untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django import template

register = template.Library()

FACTS_SHOWN = 6
VALUE_CHARS = 120


@dataclass(frozen=True)
class Fact:
    key: str
    value: str
    nested: bool  # a list or an object, shown as JSON


@dataclass(frozen=True)
class Facts:
    shown: list[Fact]
    hidden: int  # keys left out of `shown`


def _text(value: Any) -> str:
    """JSON's words (true, null) and no quotes around a plain string: the payload is JSON, not Python."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _bounded(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def payload_facts(payload: Any, keys: int | None = None, chars: int | None = None) -> Facts:
    if not isinstance(payload, dict):
        # Payloads are objects by construction (audit.actions.record); anything else is still shown.
        return Facts([Fact("value", _bounded(_text(payload), chars), False)], 0) if payload else Facts([], 0)
    items = sorted(payload.items())
    shown = items if keys is None else items[:keys]
    return Facts(
        [
            Fact(str(key), _bounded(_text(value), chars), isinstance(value, dict | list))
            for key, value in shown
        ],
        len(items) - len(shown),
    )


@register.filter
def brief_facts(payload: Any) -> Facts:
    """The log's row: the first FACTS_SHOWN keys, each value cut at VALUE_CHARS."""
    return payload_facts(payload, FACTS_SHOWN, VALUE_CHARS)


@register.filter
def all_facts(payload: Any) -> Facts:
    """The entry's page: every key, whole values."""
    return payload_facts(payload)
