"""The audit log's filters, shared by the dashboard and the API so both answer alike."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from audit.models import AuditEntry


class AuditEntryFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(method="filter_actor", label="Actor", help_text="username, or 'system'")
    action = django_filters.CharFilter(
        method="filter_action",
        label="Action",
        help_text="exact name, or a prefix ending in '.' (e.g. 'auth.')",
    )
    subject = django_filters.NumberFilter(
        field_name="subject_ref", min_value=1, label="Subject id", help_text="every entry about this subject"
    )
    target_type = django_filters.CharFilter(label="Target type", help_text='e.g. "auth.user"')
    target_id = django_filters.CharFilter(label="Target id")
    # A range on `at` itself, not on its date: `at__date` casts every row's timestamp, so the
    # (tenant, at) index could not serve the filter and a day's entries meant reading them all.
    date_from = django_filters.DateFilter(method="filter_date_from", label="From (date)")
    date_to = django_filters.DateFilter(method="filter_date_to", label="To (date)")

    class Meta:
        model = AuditEntry
        fields = ["actor", "action", "subject", "target_type", "target_id", "date_from", "date_to"]

    def filter_actor(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        value = value.strip()
        if value.lower() == "system":
            return queryset.filter(actor__isnull=True)
        return queryset.filter(actor__username__iexact=value)

    def filter_action(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        value = value.strip()
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)

    def filter_date_from(self, queryset: QuerySet[Any], name: str, value: date) -> QuerySet[Any]:
        return queryset.filter(at__gte=_start_of(value))

    def filter_date_to(self, queryset: QuerySet[Any], name: str, value: date) -> QuerySet[Any]:
        """Through the end of that day: everything before the next day starts."""
        return queryset.filter(at__lt=_start_of(value + timedelta(days=1)))


def _start_of(day: date) -> datetime:
    """Midnight of `day` where the log's dates are read (TIME_ZONE, UTC), as `at__date` compared."""
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())
