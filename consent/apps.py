from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tenancy.navigation import NAV_ITEMS, NavItem

        entries = [
            NavItem("Subjects", "consent-subjects", "consent.view_subject"),
            NavItem("Erasure requests", "consent-erasure-requests", "consent.view_erasurerequest"),
            NavItem("Deletion certificates", "consent-certificates", "consent.view_deletioncertificate"),
            NavItem("Consent texts", "consent-templates", "consent.view_consenttemplate"),
            NavItem("Retention", "consent-schedules", "consent.view_retentionschedule"),
        ]
        # ready() can run more than once (tests); the navigation must not grow each time.
        NAV_ITEMS.extend(item for item in entries if item not in NAV_ITEMS)
