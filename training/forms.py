from __future__ import annotations

from django import forms

from training.jobs.lifecycle import MAX_CANCEL_REASON_CHARS


class CancelForm(forms.Form):
    reason = forms.CharField(
        label="Why (optional, shown on the job)", required=False, max_length=MAX_CANCEL_REASON_CHARS
    )
