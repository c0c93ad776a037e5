"""What a generation or an edit may ask for, checked in the web process before anything is queued.

Every value has a bound a person can read in the refusal, so a job that would
fail on the GPU minutes later (a prompt naming a token the model lacks, a size
the model was never meant for) is refused at once with the reason. Sampling
values come from the core's generation presets (`quick`, `standard`, `max`:
personalization.presets) with the values asked for over them, checked by the
core's bounds, so the API accepts what the core accepts. Plain Python and the
core's torch-free modules only: the web process never loads torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from personalization.presets import GENERATION_BOUNDS, Bound, ModelKind, PresetError, resolve_generation
from personalization.prompts import DEFAULT_PROMPT, PRESETS, PromptError, expand_prompt, preset_prompt
from training.jobs import JobError

MAX_PROMPT_CHARS = 1000
# Images per job: fewer than the core allows (16), because a job's outputs are written and reviewed as
# one batch.
COUNT = Bound(int, 1, 8)
SIZE_MULTIPLE = 8
DEFAULT_PRESET = "standard"
# An edit's sampling defaults (personalization.edit.EditSettings'); its bounds are generation's.
DEFAULT_EDIT_STEPS = 50
DEFAULT_EDIT_GUIDANCE = 7.5
# The automatic edit region is read over this many target steps (EditSettings.mask_steps), or all of
# them when an edit has fewer.
MASK_STEPS = 5
# An edit works on the photo at most this large (the longer side, in pixels): the model works at its
# own resolution anyway, and the pixel-space composite of a 40-megapixel photo would need gigabytes.
EDIT_MAX_SIDE = 2048

# Named prompts for generation; each names the subject and may be given instead of a prompt.
PROMPT_PRESETS: dict[str, str] = {
    "portrait": DEFAULT_PROMPT,
    "headshot": "a professional headshot of {identity} {class_word}, studio lighting, plain background",
    "outdoors": "a photo of {identity} {class_word} outdoors in natural light",
    "half-body": "a half-body photo of {identity} {class_word} looking at the camera",
}
EDIT_PRESETS = tuple(sorted(PRESETS))


def invalid(message: str) -> JobError:
    return JobError(message, code="invalid_parameters")


def checked(name: str, value: Any, bound: Bound) -> Any:
    """`value` (as the bound's type) when the core's `bound` accepts it, else the refusal naming the field."""
    reason = bound.check(value)
    if reason is not None:
        raise invalid(f"{name} {reason}.")
    return bound.kind(value) if bound.kind in (int, float) else value


def _text(name: str, value: str) -> str:
    if len(value) > MAX_PROMPT_CHARS:
        raise invalid(f"{name} is {len(value)} characters long; the most is {MAX_PROMPT_CHARS}.")
    return value


def _expanded(name: str, template: str, manifest: Mapping[str, Any], *, style: str | None = None) -> str:
    """The prompt as the model will read it: {identity}, {class_word}, {style} written out."""
    try:
        return expand_prompt(
            _text(name, template),
            manifest.get("tokens", {}),
            manifest.get("class_word", "person"),
            style=style,
        )
    except PromptError as error:
        raise invalid(f"{name}: {error}.") from None


def generation_prompt(
    manifest: Mapping[str, Any], *, prompt: str, prompt_preset: str, style: bool, negative_prompt: str
) -> str:
    """The template to store (a preset's, or the one given); refused unless it expands for this model.

    A multiconcept model's style goes in with `style` (its "style" token, as `generate --style`).
    """
    if prompt_preset:
        if prompt.strip():
            raise invalid("Give a prompt or a prompt_preset, not both.")
        if prompt_preset not in PROMPT_PRESETS:
            raise invalid(
                f"prompt_preset must be one of {', '.join(PROMPT_PRESETS)}, not {prompt_preset[:40]!r}."
            )
        prompt = PROMPT_PRESETS[prompt_preset]
    if not prompt.strip():
        raise invalid("Give a prompt (write {identity} where the subject goes) or a prompt_preset.")
    _expanded("prompt", prompt, manifest, style="style" if style else None)
    _expanded("negative_prompt", negative_prompt, manifest)
    return prompt


def generation_size(manifest: Mapping[str, Any], width: int | None, height: int | None) -> tuple[int, int]:
    """Width and height: the model's training resolution by default, else from half to twice it.

    Outside that range a base model makes tiled or broken images (an SD 1.5 model at 2048 px);
    a multiple of 8 is what the VAE divides into latents.
    """
    resolution = int(manifest.get("resolution") or 512)
    side = Bound(
        int,
        max(SIZE_MULTIPLE * 8, resolution // 2 // SIZE_MULTIPLE * SIZE_MULTIPLE),
        resolution * 2,
        multiple_of=SIZE_MULTIPLE,
    )
    return (
        resolution if width is None else checked("width", width, side),
        resolution if height is None else checked("height", height, side),
    )


def generation_settings(
    manifest: Mapping[str, Any],
    *,
    model_kind: ModelKind,
    preset: str,
    count: int | None,
    seed: int,
    width: int | None,
    height: int | None,
    steps: int | None,
    guidance: float | None,
    scheduler: str | None,
) -> dict[str, Any]:
    """The sampling values of a generation: the core's `preset` with the values given over it.

    Keys: count, seed, steps, guidance, scheduler, hires (the second pass of `max` on SD 1.5, or None),
    width, height.
    """
    if count is not None:
        checked("count", count, COUNT)
    given = {"count": count, "seed": seed, "steps": steps, "guidance": guidance, "scheduler": scheduler}
    try:
        resolved = resolve_generation(
            preset, {key: value for key, value in given.items() if value is not None}, model_kind=model_kind
        )
    except PresetError as error:
        raise invalid("; ".join(f"{key} {reason}" for key, reason in error.problems.items()) + ".") from None
    width, height = generation_size(manifest, width, height)
    return {**resolved.values, "width": width, "height": height}


# What an empty source prompt means, for the studio form and the API's schema.
PHOTO_CAPTION_HELP = (
    "Leave empty to use the photo's own caption: the worker reads its pose and expression, e.g. "
    '"a photo of {identity} {class_word}, facing the camera, eyes open, looking at the camera, '
    'smiling with teeth".'
)


def edit_prompts(
    manifest: Mapping[str, Any], *, source_prompt: str, preset: str, target_prompt: str, negative_prompt: str
) -> tuple[str, str, str]:
    """Source, target and negative prompt as the model reads them; source and target must name the
    subject (its identifier).

    A preset writes the target from the source (personalization.prompts.preset_prompt), as the CLI's
    `edit --preset` does.
    """
    identifier = manifest.get("tokens", {}).get("identity")
    if not identifier:
        raise invalid("This model version has no identity token; it cannot edit photos of its subject.")
    source = _expanded("source_prompt", source_prompt or DEFAULT_PROMPT, manifest)
    if bool(preset) == bool(target_prompt.strip()):
        raise invalid("Give a preset or a target_prompt (what the photo should become), one of them.")
    if preset:
        if preset not in PRESETS:
            raise invalid(f"preset must be one of {', '.join(EDIT_PRESETS)}, not {preset[:40]!r}.")
        target = preset_prompt(source, preset, identifier)
    else:
        target = _expanded("target_prompt", target_prompt, manifest)
    for name, text in (("source_prompt", source), ("target_prompt", target)):
        if identifier not in text:
            raise invalid(f"{name} must name the subject: write {{identity}} where they are ({text[:80]!r}).")
    return source, target, _expanded("negative_prompt", negative_prompt, manifest)


def edit_sampling(steps: int, guidance: float) -> tuple[int, float]:
    """An edit's steps and guidance, within generation's bounds (the same sampler runs them)."""
    return (
        checked("steps", steps, GENERATION_BOUNDS["steps"]),
        checked("guidance", guidance, GENERATION_BOUNDS["guidance"]),
    )
