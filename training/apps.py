from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from consent.erasure import ErasureHook, register_erasure_hook
        from tenancy.navigation import NAV_ITEMS, NavItem
        from training import kind
        from training.actions.references import forget_reference_sets
        from training.jobs.lifecycle import cancel_jobs_of_subject

        kind.register()
        entries = [
            NavItem("Jobs", "jobs", "training.view_job"),
            NavItem("Models", "models", "training.view_identitymodel"),
        ]
        # ready() can run more than once (tests); the navigation must not grow each time.
        NAV_ITEMS.extend(item for item in entries if item not in NAV_ITEMS)

        # A revocation (or any erasure) stops the subject's jobs: queued ones at once, running ones
        # within a step; the files they stored are the subject's assets and go with the key.
        register_erasure_hook(ErasureHook(name="training.jobs", cancel_jobs=cancel_jobs_of_subject))
        # What reference sets derived from the erased files (captions, face geometry) goes with them.
        register_erasure_hook(ErasureHook(name="training.reference_sets", forget_rows=forget_reference_sets))
