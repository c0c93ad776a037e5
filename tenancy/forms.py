"""Dashboard forms: they validate input; the writes themselves happen in tenancy.actions."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings

from tenancy.actions import MAX_TOKEN_NAME_CHARS
from tenancy.models import Role
from tenancy.parsers import JSONTooDeepError, loads_bounded


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
    name = forms.CharField(max_length=200)
    settings = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
        required=False,
        help_text="A JSON object.",
    )

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
        return value


class ApiTokenForm(forms.Form):
    """A new token's name and lifetime; tenancy.actions.issue_api_token enforces the longest lifetime."""

    name = forms.CharField(max_length=MAX_TOKEN_NAME_CHARS, help_text="What the token is for.")
    days = forms.IntegerField(min_value=1, help_text="How many days it lives.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        longest = settings.LIKENESS_API_TOKEN_DAYS
        self.fields["days"].initial = longest
        self.fields["days"].widget.attrs["max"] = longest
