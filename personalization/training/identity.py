"""MagiCapture's identity loss: 1 - cos between the face in Tweedie's x0-hat and the paired source face.

As the official code applies it (lora_diffusion_/magicapture_train.py loss_step, loss_utils.py
get_face_feature_from_tensor): faces are detected on a detached copy of the decoded x0-hat, the
face is cut out by a 5-point similarity warp of the differentiable image, embedded by a frozen
face-recognition network and compared with the embedding of the source photo the sample is
paired with; a sample whose x0-hat shows no face adds nothing. The official code uses RetinaFace
and an ArcFace R100 (weights outside this product's licence); here dlib's HOG detector, its
5-point landmarks and the PyTorch port of its descriptor ResNet, all CC0 and installed with
face-recognition-models, so the loss is on by default with no download.
"""

from __future__ import annotations

import numpy as np
import torch

from personalization import faces
from personalization.face_descriptor import FaceDescriptorNet, aligned_chips, load_face_descriptor
from personalization.losses import identity_loss

# dlib's HOG detector finds faces from about 80 px. Training photos at SD's 512 px or more show
# faces well above that, and not upsampling keeps the detector cheap on every step; smaller
# images (the tiny test model's 64 px) are upsampled (doubled) until they reach this side.
DETECTION_MIN_SIDE = 256


def _upsampling(side: int) -> int:
    doublings = 0
    while side << doublings < DETECTION_MIN_SIDE:
        doublings += 1
    return doublings


def _to_rgb(image: torch.Tensor) -> np.ndarray:
    """A (3, H, W) image in [-1, 1] as the uint8 array the detector reads (no gradient)."""
    scaled = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return scaled.to(torch.uint8).permute(1, 2, 0).cpu().numpy()


class IdentityLoss:
    """Embeds faces of images in [-1, 1] through the descriptor port, with gradients to the pixels."""

    def __init__(self, net: FaceDescriptorNet) -> None:
        self.net = net

    @classmethod
    def load(cls, device: torch.device) -> IdentityLoss:
        return cls(load_face_descriptor(faces.embedding_model_path(), device))

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Descriptors of the largest face of each image that has one, and those images' indices."""
        found: list[int] = []
        landmarks: list[np.ndarray] = []
        upsample = _upsampling(max(images.shape[-2:]))
        for index, image in enumerate(images):
            detected = faces.detect_faces(_to_rgb(image), upsample=upsample)
            if detected:
                found.append(index)
                landmarks.append(detected[0].landmarks)
        if not found:
            return images.new_zeros(0, 0), found
        pixels = (images[found].float().clamp(-1, 1) + 1) * 127.5
        chips = aligned_chips(pixels, landmarks)
        return self.net(chips), found

    def target(self, photo: torch.Tensor) -> torch.Tensor | None:
        """A source photo's descriptor (1, 3, H, W in [-1, 1]), computed once; None without a face."""
        with torch.no_grad():
            embeddings, found = self.embed(photo)
        return embeddings[0].float() if found else None

    def __call__(self, images: torch.Tensor, targets: list[torch.Tensor]) -> torch.Tensor | None:
        """Mean 1 - cos over the images with a face; None when no image shows one (skipped)."""
        embeddings, found = self.embed(images)
        if not found:
            return None
        references = torch.stack([targets[index] for index in found]).to(embeddings.device)
        return identity_loss(embeddings, references).mean()
