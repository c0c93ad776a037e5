"""JSON that cannot exhaust the interpreter's stack.

Python's json module recurses once per nesting level, so a few kilobytes of
`[[[[...` raise RecursionError: a 500 for the sender (anonymous, on the token
endpoint) and, had it parsed, a structure that every later recursive step
(serializers, the audit payload's canonical form) would trip on again. The
nesting is therefore measured first, without recursion and without parsing,
and refused past MAX_JSON_DEPTH with a reason; no legitimate request of this
product nests anywhere near that deep. Sizes are bounded before this by the
request-body limit (config.bodylimit).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 32

# A complete JSON string (skipped: brackets inside strings are text) or one bracket.
_STRUCTURE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class JSONTooDeepError(ValueError):
    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nested more than {max_depth} levels deep; flatten the document.")


def check_json_depth(document: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise JSONTooDeepError past max_depth nested arrays and objects (in any ASCII-compatible encoding)."""
    depth = 0
    for match in _STRUCTURE.finditer(document):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise JSONTooDeepError(max_depth)
        elif token in (b"]", b"}"):
            depth -= 1


def loads_bounded(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads for text from outside: too deep a document is a ValueError, never a RecursionError."""
    check_json_depth(text.encode("utf-8"), max_depth)
    return json.loads(text)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing too deep a document with a 400 and its reason."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        document = stream.read()
        try:
            check_json_depth(document)
        except JSONTooDeepError as error:
            raise ParseError(f"JSON parse error - {error}") from None
        return super().parse(io.BytesIO(document), media_type, parser_context)
