"""Keeps bearer tokens out of every log line.

A consent link's token in a URL is a key: whoever holds it can sign an
unsigned link or revoke a consent (which erases the subject's data), and an
invitation's token joins a tenant. The web server's access log and
django.request write request paths, so without this filter every visit to
`/consent/<token>/` would leave a usable key in the logs and with whoever
reads, ships or backs them up.

`redact` removes (a) every path segment after `/consent/` or `/invitations/`
except route words such as `in-person` (lowercase letters and hyphens) and file
names such as `views.py` (a traceback's paths through the consent package), in
plain or percent-encoded paths (a `?next=` carries one); no token has either
shape: signed ones hold colons, random ones mixed case or digits. It also
removes (b) anything shaped like a django.core.signing token (`value:sig` or
`value:timestamp:sig`, base64url, the signature at least 27 characters),
wherever it appears. The rest of the line stays as it was.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_SEP = r"(?:/|%2[fF])"
_TOKEN_ROUTE = re.compile(rf"({_SEP}(?:consent|invitations){_SEP})([^\s?#&\"'<>]*)")
_ROUTE_WORD_OR_FILE_NAME = re.compile(r"[a-z][a-z-]{0,23}|[a-z_][a-z0-9_]{0,40}\.[a-z]{1,5}")
_COLON = r"(?::|%3[aA])"
_SIGNED_VALUE = re.compile(
    rf"(?<![\w.:%-])\.?[A-Za-z0-9_-]+(?:{_COLON}[A-Za-z0-9_-]+)?{_COLON}[A-Za-z0-9_-]{{27,}}(?![\w-])"
)


def _redact_route_tail(match: re.Match[str]) -> str:
    parts = re.split(f"({_SEP})", match.group(2))
    kept = [
        part if not part or re.fullmatch(_SEP, part) or _ROUTE_WORD_OR_FILE_NAME.fullmatch(part) else REDACTED
        for part in parts
    ]
    return match.group(1) + "".join(kept)


def redact(text: str) -> str:
    return _SIGNED_VALUE.sub(REDACTED, _TOKEN_ROUTE.sub(_redact_route_tail, text))


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record's message, arguments, traceback and stack in place; never drops a record.

    The arguments are merged into the message first: the access log passes the
    path as an argument, and a token split across message and arguments is
    still one token.
    """

    _traceback_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call must still be logged, redacted, and not raise here
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
