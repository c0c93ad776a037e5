"""The training app's only write path: reference sets, style sets, training jobs, the model registry.

Views, API viewsets and tasks call these and nothing else writes the app's rows
(the job machinery's own rows change only in training.jobs). Each function
checks the actor's permission, the consent its purpose needs, and appends
ID-only audit entries in the same transaction as its writes. One module per
sub-domain; this package re-exports the public names:

- references: reference sets (built on the default worker), captions;
- styles: style sets (the face rule, the hostile-input checks);
- jobs: queueing a training job;
- registry: identity model versions and the active one.
"""

from training.actions.common import TrainingActionError, allowed_base_model
from training.actions.jobs import queue_training_job
from training.actions.references import (
    MAX_CAPTION_CHARS,
    build_reference_set,
    change_caption,
    request_reference_set,
)
from training.actions.registry import activate_identity_model, create_identity_model
from training.actions.styles import StylePhotoDamagedError, StylePhotosRejectedError, create_style_set

__all__ = [
    "MAX_CAPTION_CHARS",
    "StylePhotoDamagedError",
    "StylePhotosRejectedError",
    "TrainingActionError",
    "activate_identity_model",
    "allowed_base_model",
    "build_reference_set",
    "change_caption",
    "create_identity_model",
    "create_style_set",
    "queue_training_job",
    "request_reference_set",
]
