"""A visible "AI-generated" label burned into the image's corner, for tenants that require one.

EU AI Act Art. 50(4) asks deployers of deepfakes to disclose them; the machine-readable layers
(manifest, XMP, watermark) are invisible to a viewer, so a tenant can require this label on every
release (tenant setting `require_visible_ai_label`). It is part of the pixels, so it survives
re-encoding and resizing, and it is applied before the watermark so the mark covers it too.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

TEXT = "AI-generated"
# The label's height as a share of the image's shorter side, and the least height that stays legible.
HEIGHT_SHARE = 0.06
MIN_TEXT_PX = 10
MARGIN_SHARE = 0.02


def apply(image: Image.Image, text: str = TEXT) -> Image.Image:
    """A copy of `image` with `text` in white on a dark box in its bottom-right corner, scaled to it."""
    labelled = image.convert("RGB")
    side = min(labelled.size)
    text_px = max(MIN_TEXT_PX, round(side * HEIGHT_SHARE))
    font = ImageFont.load_default(size=text_px)
    draw = ImageDraw.Draw(labelled, "RGBA")
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    padding = max(2, text_px // 4)
    margin = max(1, round(side * MARGIN_SHARE))
    box_width, box_height = right - left + 2 * padding, bottom - top + 2 * padding
    x0 = max(0, labelled.width - margin - box_width)
    y0 = max(0, labelled.height - margin - box_height)
    draw.rectangle((x0, y0, x0 + box_width, y0 + box_height), fill=(0, 0, 0, 170))
    draw.text((x0 + padding - left, y0 + padding - top), text, font=font, fill=(255, 255, 255, 255))
    return labelled
