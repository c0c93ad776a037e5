"""The studio: generation and edit jobs, outputs, approval queue, provenance, exports."""

from django.apps import AppConfig


class EditingConfig(AppConfig):
    name = "editing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from consent.erasure import ErasureHook, register_erasure_hook
        from consent.models import Purpose
        from editing.actions import withdraw_outputs
        from editing.models import EditJob, GenerationJob
        from editing.worker import run_edit, run_generation
        from tenancy.navigation import NAV_ITEMS, NavItem
        from training.jobs import JobKind, register_job_kind

        register_job_kind(
            JobKind(
                name="generation",
                label="Generation",
                model=GenerationJob,
                purpose=Purpose.GENERATE_IMAGES,
                execute=run_generation,
            )
        )
        register_job_kind(
            JobKind(name="edit", label="Edit", model=EditJob, purpose=Purpose.EDIT_PHOTOS, execute=run_edit)
        )
        # Jobs are cancelled by training's hook (every kind); outputs are this app's: withdrawn, their
        # files destroyed with the subject key like every other file of the subject.
        register_erasure_hook(ErasureHook(name="editing.outputs", withdraw_outputs=withdraw_outputs))
        # ready() can run more than once (tests); the navigation must not grow each time.
        for item in (
            NavItem("Studio", "studio", "editing.add_generationjob"),
            NavItem("Approvals", "approvals", "editing.review_output"),
            NavItem("Releases", "releases", "editing.view_release"),
        ):
            if item not in NAV_ITEMS:
                NAV_ITEMS.append(item)
