"""Dashboard forms: they validate input; the writes themselves happen in tenancy.actions."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from tenancy.models import Role
from tenancy.parsers import JSONTooDeepError, loads_bounded


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="An existing user's username.")
    role = forms.ChoiceField(choices=Role.choices)

    def clean_username(self) -> Any:
        username = self.cleaned_data["username"].strip()
        user = get_user_model()._default_manager.filter(username=username).first()
        if user is None or not user.is_active:
            raise forms.ValidationError("No active user with this username.")
        return user


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
