"""Prompt templates and the non-rigid edit presets: plain text, no torch.

Prompts name a trained subject and style through the manifest's tokens; templates
write `{identity}`, `{style}` and `{class_word}` so a prompt works with any trained
folder. Presets turn a source prompt into the target prompt of a common non-rigid
edit, in the editing-oriented phrasing LIPE's captions use. Kept free of heavy
imports so the CLI's argument parsing (and --help) stays instant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PROMPT = "a photo of {identity} {class_word}"


class PromptError(ValueError):
    """A prompt template or preset that cannot be written out for this model."""


def expand_prompt(
    template: str, tokens: Mapping[str, str], class_word: str = "person", *, style: str | None = None
) -> str:
    """Writes the manifest's tokens (role -> token) into `template`.

    `style` names a style role of the manifest; unless the prompt already places that
    token, " in the <token> style" is appended (MagiCapture's composed prompt).
    """
    if style is not None:
        if style not in tokens or style == "identity":
            known = ", ".join(sorted(tokens)) or "none"
            raise PromptError(f"this model has no style token {style!r} (its roles: {known})")
        if "{" + style + "}" not in template and tokens[style] not in template:
            template += " in the {" + style + "} style"
    values = {**tokens, "class_word": class_word}
    try:
        return template.format(**values)
    except KeyError as error:
        raise PromptError(
            f"the prompt names {{{error.args[0]}}}, which this model does not have "
            f"(it has {', '.join(sorted(values))})"
        ) from error
    except (ValueError, IndexError) as error:
        raise PromptError(f"the prompt is not a valid template: {error}") from error


_SIDES = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_sides(caption: str) -> str:
    """The caption of the mirrored photo: every standalone "left" and "right" swapped, case kept.

    Captions name sides in the image's frame ("head turned to the left", "looking to the right"),
    so a horizontally flipped training photo shows the other side; without the swap the flip
    would teach the model that "left" means both.
    """

    def other(match: re.Match[str]) -> str:
        word = match.group(0)
        swapped = "right" if word.lower() == "left" else "left"
        if word.isupper():
            return swapped.upper()
        return swapped.capitalize() if word[0].isupper() else swapped

    return _SIDES.sub(other, caption)


@dataclass(frozen=True)
class Preset:
    name: str
    phrase: str
    # Clauses of the source prompt that mention any of these are replaced by the phrase
    # (a source saying "neutral expression" must not also say "smiling").
    conflicts: tuple[str, ...]


_EXPRESSION = ("smil", "laugh", "grin", "frown", "neutral", "expression", "serious", "mouth")
_EYES = ("eyes closed", "eyes open", "closed eyes", "open eyes", "blink", "eyes shut")
_GAZE = ("looking", "gaze", "glanc")
_HEAD = ("head", "facing", "profile", "turned", "tilt")

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("smile", "smiling with teeth", _EXPRESSION),
        Preset("neutral", "neutral expression, mouth closed", _EXPRESSION),
        Preset("eyes-closed", "eyes closed", _EYES + _GAZE),
        Preset("look-left", "looking to the left", _GAZE + _EYES),
        Preset("look-right", "looking to the right", _GAZE + _EYES),
        Preset("face-camera", "head facing the camera, looking at the camera", _HEAD + _GAZE),
        Preset("head-tilt", "head tilted to the side", _HEAD),
    )
}


def preset_prompt(source_prompt: str, preset_name: str, identifier: str) -> str:
    """The target prompt for a preset: the source's clauses minus conflicting ones, plus the edit.

    The clause naming the subject (it holds the identifier) is always kept, so the
    target prompt still points the identity prior at the same person.
    """
    preset = PRESETS.get(preset_name)
    if preset is None:
        raise PromptError(f"unknown preset {preset_name!r}; choose from {', '.join(PRESETS)}")
    clauses = [clause.strip() for clause in source_prompt.split(",") if clause.strip()]
    kept = [
        clause
        for clause in clauses
        if identifier in clause or not any(word in clause.lower() for word in preset.conflicts)
    ]
    return ", ".join([*kept, preset.phrase])
