"""Forms of the training pages: they read what a person chose; every rule is checked by the actions."""

from __future__ import annotations

from typing import Any

from django import forms

from personalization.presets import PRESET_NAMES, TRAINING_PRESETS
from tenancy.models import Tenant
from training.actions import MAX_CAPTION_CHARS
from training.jobs.lifecycle import MAX_CANCEL_REASON_CHARS
from training.models import StyleSet, TrainingMethod

# Style sets offered on the subject page: the newest versions, enough for any real brand's choice.
MAX_STYLE_SETS_OFFERED = 50


class CancelForm(forms.Form):
    reason = forms.CharField(
        label="Why (optional, shown on the job)", required=False, max_length=MAX_CANCEL_REASON_CHARS
    )


def preset_label(preset: str) -> str:
    """The preset with its documented step counts per method, so staff know what they start."""
    steps = " · ".join(
        f"{method} {TRAINING_PRESETS[method][preset]['steps']} steps" for method in TrainingMethod.values
    )
    return f"{preset} ({steps})"


class TrainForm(forms.Form):
    method = forms.ChoiceField(
        label="Method", choices=TrainingMethod.choices, initial=TrainingMethod.IDENTITY
    )
    style_set = forms.ModelChoiceField(
        label="Style set (the multiconcept method only)",
        queryset=StyleSet.objects.none(),
        required=False,
        empty_label="— none —",
    )
    preset = forms.ChoiceField(
        label="Preset", choices=[(name, preset_label(name)) for name in PRESET_NAMES], initial="quick"
    )

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["style_set"]
        assert isinstance(field, forms.ModelChoiceField)
        newest = StyleSet.objects.for_tenant(tenant).order_by("-created_at", "-id")[:MAX_STYLE_SETS_OFFERED]
        field.queryset = (
            StyleSet.objects.for_tenant(tenant)
            .filter(pk__in=newest.values("pk"))
            .order_by("name", "-version")
        )


class CaptionForm(forms.Form):
    caption = forms.CharField(label="Caption", max_length=MAX_CAPTION_CHARS)
