from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from consent.erasure import ErasureHook, register_erasure_hook
        from training.jobs.lifecycle import cancel_jobs_of_subject

        # A revocation (or any erasure) stops the subject's jobs: queued ones at once, running ones
        # within a step; the files they stored are the subject's assets and go with the key.
        register_erasure_hook(ErasureHook(name="training.jobs", cancel_jobs=cancel_jobs_of_subject))
