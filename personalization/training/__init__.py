"""The two training methods on one engine: LIPE's identity prior and MagiCapture's identity + style.

identity (LIPE stage 1): LoRA on the UNet attention projections, a new identifier token whose
embedding stays fixed (so the text side is frozen and every caption is encoded once), the
action-descriptive captions from `prepare`, prior preservation on a cached class set (default on).

multiconcept (MagiCapture): phase 1 learns only the new token embeddings ([V1] identity from
the class word, [V2] style at random) with the masked source and reference losses; phase 2
trains LoRA (UNet attention + GEGLU, text encoder attention) and the embeddings with the masked
losses, composed prompts (source : reference : composed exactly 1:1:1 over steps, the composed
loss outside the face only), attention refocusing on the quarter-resolution cross-attention
maps and, when a face-recognition network is configured, the identity loss.

Only LoRA parameters and the new embedding rows change: the base weights are frozen, and the
new rows live in a separate parameter, so the original embedding rows are never touched.
Every random draw comes from one seeded generator saved in checkpoints, which is what makes
`resume` reproduce an uninterrupted run exactly.

Both methods train on flipped and colour-jittered variants of each photo (augment), and
multiconcept follows the official run's optimisation schedule (schedule).

Modules: config (settings, progress, result), parameters (token rows, LoRA), augment (flip and
colour jitter), data (cached latents, batches), text (prompt conditioning), objective (the
losses), schedule (groups, rate decay, clipping, norm control, lambda_style, timesteps),
checkpoints, outputs (the trained folder), trainer (the loop). Callers import from here.
"""

from personalization.training.config import (
    Method,
    ProgressCallback,
    TrainConfig,
    TrainingError,
    TrainProgress,
    TrainResult,
)
from personalization.training.data import COMPOSED_TEMPLATES
from personalization.training.parameters import TrainableTokenRows
from personalization.training.trainer import Trainer, train

__all__ = [
    "COMPOSED_TEMPLATES",
    "Method",
    "ProgressCallback",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainableTokenRows",
    "Trainer",
    "TrainingError",
    "train",
]
