"""Dashboard forms: they validate input; the writes themselves happen in tenancy.actions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django import forms
from django.conf import settings

from tenancy.actions import MAX_TOKEN_NAME_CHARS
from tenancy.models import Role
from tenancy.parsers import JSONTooDeepError, loads_bounded
from tenancy.tenant_settings import SETTING_KEYS


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254, help_text="Where the invitation link is sent.")
    role = forms.ChoiceField(choices=Role.choices)


class NewAccountForm(forms.Form):
    """An invitee's new account; the action validates the username and the password's strength."""

    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=4096)
    password_again = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=4096)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password") and data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TenantSettingsForm(forms.Form):
    """The tenant's name, a field per documented setting, and the other keys as a JSON object.

    The fields only parse what was typed; tenancy.actions.update_tenant checks the values' bounds. A
    documented field left out of the request keeps the tenant's current value (API-style clients and
    older forms send only what they change); yes/no settings are a choice, not a checkbox, so that
    "not sent" never reads as "no".
    """

    name = forms.CharField(max_length=200)
    settings = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        required=False,
        label="Other keys (JSON object)",
        help_text="Keys of your own integrations, kept as they are. Leave empty if you have none.",
    )

    def __init__(self, *args: Any, current: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current = current
        for key in SETTING_KEYS:
            field: forms.Field
            if key.bound.kind is bool:
                field = forms.TypedChoiceField(
                    choices=[("true", "Yes"), ("false", "No")],
                    coerce=lambda value: value == "true",
                    empty_value=None,
                    required=False,
                )
            elif key.bound.choices:
                field = forms.ChoiceField(
                    choices=[(choice, choice) for choice in key.bound.choices], required=False
                )
            else:
                attrs = {"min": key.bound.low, "max": key.bound.high}
                field = forms.IntegerField(widget=forms.NumberInput(attrs=attrs), required=False)
            field.label, field.help_text = key.label, key.help
            field.initial = _as_initial(current[key.name])
            self.fields[key.name] = field

    def documented_fields(self) -> list[forms.BoundField]:
        return [self[key.name] for key in SETTING_KEYS]

    def clean_settings(self) -> dict[str, Any]:
        raw = self.cleaned_data["settings"].strip() or "{}"
        try:
            value = loads_bounded(raw)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(f"Not valid JSON: {error.msg} (line {error.lineno}).") from None
        except JSONTooDeepError as error:
            raise forms.ValidationError(str(error)) from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Settings must be a JSON object ({...}).")
        if documented := sorted(set(value) & {key.name for key in SETTING_KEYS}):
            raise forms.ValidationError(f"Set {', '.join(documented)} with the fields above, not here.")
        return value

    def settings_to_save(self) -> dict[str, Any]:
        """The whole settings object: each documented value (sent, or the current one), then the others."""
        documented = {}
        for key in SETTING_KEYS:
            value = self.cleaned_data.get(key.name)
            documented[key.name] = self.current[key.name] if value in (None, "") else value
        return {**documented, **self.cleaned_data["settings"]}


def _as_initial(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


class ApiTokenForm(forms.Form):
    """A new token's name and lifetime; tenancy.actions.issue_api_token enforces the longest lifetime."""

    name = forms.CharField(max_length=MAX_TOKEN_NAME_CHARS, help_text="What the token is for.")
    days = forms.IntegerField(min_value=1, help_text="How many days it lives.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        longest = settings.LIKENESS_API_TOKEN_DAYS
        self.fields["days"].initial = longest
        self.fields["days"].widget.attrs["max"] = longest
