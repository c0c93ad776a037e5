"""Input parsing for the consent pages; every rule that matters is enforced again in consent.actions."""

from __future__ import annotations

from typing import Any

from django import forms

from consent.actions.erasure_requests import MAX_DECISION_REASON_CHARS
from consent.models import ConsentTemplate, Purpose, Representation
from tenancy.models import Tenant


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.replace(";", ",").split(",") if item.strip()]


class SubjectForm(forms.Form):
    display_name = forms.CharField(max_length=200, label="Name")
    contact_email = forms.EmailField(required=False, label="The subject's own e-mail (for the consent link)")
    internal_reference = forms.CharField(max_length=100, required=False, label="Internal reference")


class ContactForm(forms.Form):
    contact_email = forms.EmailField(
        required=False, label="The subject's own e-mail address (consent links and codes go only there)"
    )


class SendLinkForm(forms.Form):
    template = forms.ModelChoiceField(queryset=ConsentTemplate.objects.none(), label="Consent text")
    purposes = forms.MultipleChoiceField(
        choices=Purpose.choices, widget=forms.CheckboxSelectMultiple, label="Purposes to ask for"
    )
    intended_uses = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), label="Intended uses (specific: what, where, how long)"
    )
    channels = forms.CharField(required=False, label="Channels (comma separated)")
    territories = forms.CharField(required=False, label="Territories (comma separated)")
    identity_verification = forms.CharField(max_length=300, label="How the subject's identity was verified")
    valid_from = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), label="Valid from"
    )
    expires_at = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), label="Expires"
    )
    sign_within_hours = forms.IntegerField(
        required=False, min_value=1, max_value=24 * 90, label="Link can be signed for (hours)"
    )

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        template_field = self.fields["template"]
        assert isinstance(template_field, forms.ModelChoiceField)
        template_field.queryset = ConsentTemplate.objects.for_tenant(tenant).order_by("name", "-version")
        # Preselect the newest wording: sending an outdated text should be a choice, not an accident.
        newest = ConsentTemplate.objects.for_tenant(tenant).order_by("-created_at", "-id").first()
        if newest is not None:
            template_field.initial = newest.pk

    def list_value(self, name: str) -> list[str]:
        return _split(self.cleaned_data.get(name) or "")


class RevocationForm(forms.Form):
    received_via = forms.CharField(max_length=100, label="Received by (email, letter, phone...)")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Reason or the subject's words")


class EraseForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), label="Reason (the request it answers)"
    )


class DeclineForm(forms.Form):
    reason = forms.CharField(
        max_length=MAX_DECISION_REASON_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Why the purpose is not satisfied yet (the requester reads it)",
    )


class ConsentTemplateForm(forms.Form):
    name = forms.CharField(max_length=200, label="Name (same name = new version)")
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 10}), label="Plain-language consent text")


class RetentionScheduleForm(forms.Form):
    title = forms.CharField(max_length=200)
    years_after_last_interaction = forms.IntegerField(min_value=1, max_value=3, initial=3)
    days_after_purpose_satisfied = forms.IntegerField(min_value=0, max_value=365, initial=0)


class SignForm(forms.Form):
    """The subject's form: every purpose its own unticked box, nothing pre-selected."""

    purposes = forms.MultipleChoiceField(choices=Purpose.choices, required=False)
    representation = forms.ChoiceField(choices=Representation.choices)
    representation_detail = forms.CharField(max_length=300, required=False)
    full_name = forms.CharField(max_length=200)


class CodeForm(forms.Form):
    """The one-time code of an in-person signing (spaces allowed, as people type them)."""

    code = forms.CharField(max_length=32)
