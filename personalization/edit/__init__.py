"""LIPE stage 2 (NIMA): non-rigid editing of a photo of a trained subject.

The photo is DDIM-inverted with the source prompt and its latent trajectory kept.
The identifier token's cross-attention, read along that trajectory, marks where the
subject is (M_s); a short run of the target branch marks where the edited subject
will be (M_t, "in advance"). Their union, dilated, is the edit region: at every step
of a configurable window the target's latent is kept inside it and the source
trajectory's latent outside it, so the background follows the photo. MasaCtrl's
mutual self-attention can be switched on to keep the subject's appearance while its
pose changes. Finally the decoded result is composited over the untouched photo in
pixel space with a feathered mask: outside the feathered region every pixel is the
input's, exactly.

The package by concern: `settings` (what is asked, refused and returned), `conditioning`
(prompt embeddings, SD 1.5 and SDXL), `framing` (the working size, the crop around the edit region),
`inversion` (DDIM inversion, VAE),
`sampling` (the blended target branch), `masks` (attention masks, composite weight and
composite), `nima` (the edit). Callers import from `personalization.edit`.
"""

from personalization.edit.framing import Crop, choose_crop, working_size
from personalization.edit.inversion import Inversion, decode_latent, encode_image, invert
from personalization.edit.masks import attention_mask, composite, composite_weight, load_user_mask
from personalization.edit.nima import MASACTRL_LAYER_FRACTION, edit_image
from personalization.edit.sampling import reconstruct
from personalization.edit.settings import (
    DEFAULT_MARGIN_FRACTION,
    EditError,
    EditResult,
    EditSettings,
    LatentHook,
    OnStep,
    UserMaskMode,
)

__all__ = [
    "DEFAULT_MARGIN_FRACTION",
    "MASACTRL_LAYER_FRACTION",
    "Crop",
    "EditError",
    "EditResult",
    "EditSettings",
    "Inversion",
    "LatentHook",
    "OnStep",
    "UserMaskMode",
    "attention_mask",
    "choose_crop",
    "composite",
    "composite_weight",
    "decode_latent",
    "edit_image",
    "encode_image",
    "invert",
    "load_user_mask",
    "reconstruct",
    "working_size",
]
