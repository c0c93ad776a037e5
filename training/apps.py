from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from consent.erasure import ErasureHook, register_erasure_hook
        from training import kind
        from training.actions.references import forget_reference_sets
        from training.jobs.lifecycle import cancel_jobs_of_subject

        kind.register()

        # A revocation (or any erasure) stops the subject's jobs: queued ones at once, running ones
        # within a step; the files they stored are the subject's assets and go with the key.
        register_erasure_hook(ErasureHook(name="training.jobs", cancel_jobs=cancel_jobs_of_subject))
        # What reference sets derived from the erased files (captions, face geometry) goes with them.
        register_erasure_hook(ErasureHook(name="training.reference_sets", forget_rows=forget_reference_sets))
