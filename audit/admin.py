from django.contrib import admin

from audit.models import AuditEntry
from tenancy.admin import TenantOwnedAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(TenantOwnedAdmin):
    list_display = ("tenant", "seq", "at", "actor", "action", "target_type", "target_id")
    list_filter = ("tenant", "action")
    search_fields = ("action", "target_id")
    ordering = ("tenant", "-seq")
