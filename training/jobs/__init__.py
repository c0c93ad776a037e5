"""The machinery every kind of job shares: registry, lifecycle, fair dispatch, runner, progress, metering.

Kinds (training.TrainingJob, editing.GenerationJob, editing.EditJob) register a
`JobKind` in their AppConfig.ready(); everything here works for all of them.
"""

from training.jobs.kinds import JobKind, job_kind, job_kinds, register_job_kind
from training.jobs.lifecycle import JobError, JobStopped, cancel_job, cancel_jobs_of_subject, queue_job
from training.jobs.runner import JobContext

__all__ = [
    "JobContext",
    "JobError",
    "JobKind",
    "JobStopped",
    "cancel_job",
    "cancel_jobs_of_subject",
    "job_kind",
    "job_kinds",
    "queue_job",
    "register_job_kind",
]
