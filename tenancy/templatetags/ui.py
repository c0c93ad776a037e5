"""The dashboard's components as template tags: status pills, empty states, pagination.

Every page uses these instead of its own markup, so a status has one colour
everywhere and an empty list always says what to do next:

    {% load ui %}
    {% pill status.code status.label %}
    {% empty_state "No subjects yet." next="Add the first one below." who="Brand staff and admins can." %}
    {% pager page_obj %}
"""

from __future__ import annotations

from typing import Any

from django import template
from django.http import QueryDict

from tenancy.pagination import KeysetPage

register = template.Library()

# How a status stands, whatever its app: ok (done, in force), info (under way), warn (needs someone),
# bad (refused, failed, revoked), muted (ended, nothing left). Unknown codes are neutral.
TONES: dict[str, str] = {
    # subjects (consent.status)
    "active": "ok",
    "awaiting_signature": "info",
    "not_yet_valid": "info",
    "erasure_pending": "warn",
    "erasing": "warn",
    "erased": "muted",
    "revoked": "bad",
    "expired": "muted",
    "no_consent": "warn",
    # consent links
    "delivered": "info",
    "not_sent": "warn",
    "failed": "bad",
    "signed": "ok",
    # jobs
    "queued": "info",
    "running": "info",
    "succeeded": "ok",
    "cancelled": "muted",
    # reference sets, models
    "building": "info",
    "ready": "ok",
    "in_use": "ok",
    "unusable": "muted",
    # outputs
    "pending_review": "warn",
    "approved": "ok",
    "rejected": "bad",
    "withdrawn": "muted",
    "vetoed": "bad",
    # identity scores of outputs (personalization.scoring)
    "match": "ok",
    "mismatch": "bad",
    "no_face": "warn",
    # erasure requests, invitations
    "pending": "warn",
    "accepted": "ok",
    "confirmed": "ok",
    "declined": "muted",
    "superseded": "muted",
    "deadline_passed": "muted",
    "overtaken": "muted",
    "overdue": "bad",
    # audit chains (audit.verification.ChainStatus)
    "intact": "ok",
    "unanchored": "info",
    "broken": "bad",
}


def tone(code: str) -> str:
    return TONES.get(str(code), "neutral")


@register.inclusion_tag("components/pill.html")
def pill(code: Any, label: Any, element_id: str = "") -> dict[str, Any]:
    """A status pill: `code` picks the colour (TONES), `label` is what a person reads."""
    return {"code": str(code), "label": label, "tone": tone(str(code)), "element_id": element_id}


@register.inclusion_tag("components/empty_state.html")
def empty_state(
    message: str, next: str = "", who: str = "", url: str = "", action: str = ""
) -> dict[str, str]:
    """What an empty list means, what to do next and who can: never a blank table."""
    return {"message": message, "next": next, "who": who, "url": url, "action": action}


@register.inclusion_tag("components/pager.html", takes_context=True)
def pager(context: dict[str, Any], page_obj: Any) -> dict[str, Any]:
    """Previous / next links for a paginated list, keeping the page's other query parameters."""
    if isinstance(page_obj, KeysetPage):
        return {"page_obj": page_obj, "previous_url": page_obj.previous_url, "next_url": page_obj.next_url}
    request = context["request"]

    def link(number: int) -> str:
        query: QueryDict = request.GET.copy()
        query["page"] = str(number)
        return f"?{query.urlencode()}"

    return {
        "page_obj": page_obj,
        "number": page_obj.number,
        "previous_url": link(page_obj.previous_page_number()) if page_obj.has_previous() else "",
        "next_url": link(page_obj.next_page_number()) if page_obj.has_next() else "",
    }
