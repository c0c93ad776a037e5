"""Forms of the studio pages. They read what a person chose and bound every field's size; whether a
prompt names the subject, a preset exists or consent covers the job is the actions' to decide."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from editing import parameters
from editing.models import MaskMode
from personalization.presets import MAX_SEED, PRESET_NAMES
from training.models import IdentityModel


class ModelChoiceField(forms.ModelChoiceField):
    """A subject's model version, named by its subject: what a person chooses in the studio."""

    def label_from_instance(self, obj: IdentityModel) -> str:
        return f"{obj.subject.display_name} — v{obj.version} ({obj.method})"


def _model_field(queryset: QuerySet[IdentityModel]) -> ModelChoiceField:
    return ModelChoiceField(label="Subject's model", queryset=queryset, empty_label=None)


class GenerateForm(forms.Form):
    prompt_preset = forms.ChoiceField(
        label="Preset prompt",
        required=False,
        choices=[("", "— write my own below —"), *((name, name) for name in parameters.PROMPT_PRESETS)],
    )
    prompt = forms.CharField(
        label="Prompt (write {identity} where the subject goes)",
        required=False,
        max_length=parameters.MAX_PROMPT_CHARS,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    style = forms.BooleanField(
        label="In the model's trained style (identity-and-style models)", required=False
    )
    preset = forms.ChoiceField(
        label="Quality", choices=[(name, name) for name in PRESET_NAMES], initial=parameters.DEFAULT_PRESET
    )
    count = forms.IntegerField(
        label="Images",
        min_value=int(parameters.COUNT.low or 1),
        max_value=int(parameters.COUNT.high or 1),
        initial=2,
    )
    seed = forms.IntegerField(
        label="Seed (empty: a new one)", required=False, min_value=0, max_value=MAX_SEED
    )

    def __init__(self, *args: Any, models: QuerySet[IdentityModel], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields = {"model": _model_field(models), **self.fields}


class EditForm(forms.Form):
    """A photo by id (one of the subject's, offered as choices) or a new upload, and what to change."""

    source_photo = forms.TypedChoiceField(label="Photo", coerce=int, required=False, widget=forms.RadioSelect)
    # A plain file: the action's intake (consent.intake) is what checks a hostile image, once.
    source_upload = forms.FileField(label="…or upload a photo of them", required=False)
    # Filled by static/likeness/studio.js from the canvas painted over the photo (a PNG, white: may change).
    mask = forms.FileField(label="Painted mask (PNG)", required=False)
    mask_mode = forms.ChoiceField(label="Painted area", choices=MaskMode.choices, initial=MaskMode.CONSTRAIN)
    preset = forms.ChoiceField(
        label="Edit",
        required=False,
        choices=[
            ("", "— write the target below —"),
            *((name, name.replace("-", " ")) for name in parameters.EDIT_PRESETS),
        ],
        initial="smile",
    )
    target_prompt = forms.CharField(
        label="Target (what the photo should become; {identity} names the subject)",
        required=False,
        max_length=parameters.MAX_PROMPT_CHARS,
    )
    source_prompt = forms.CharField(
        label="Describe the photo as it is",
        required=False,
        max_length=parameters.MAX_PROMPT_CHARS,
        help_text=parameters.PHOTO_CAPTION_HELP,
    )

    def __init__(
        self, *args: Any, models: QuerySet[IdentityModel], photos: list[tuple[int, str]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields = {"model": _model_field(models), **self.fields}
        photo = self.fields["source_photo"]
        assert isinstance(photo, forms.TypedChoiceField)
        photo.choices = photos
