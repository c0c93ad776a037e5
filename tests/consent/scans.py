"""Scans of the whole database and the whole storage root, for the erasure tests."""

from __future__ import annotations

from pathlib import Path

from django.apps import apps
from django.db import models


def rows_mentioning(needles: list[str]) -> list[str]:
    """Every `model.field` of any app whose text or JSON value contains one of `needles`."""
    hits: list[str] = []
    for model in apps.get_models():
        manager = model._base_manager  # plain manager: a system-wide scan, like the erasure's
        for field in model._meta.concrete_fields:
            if not isinstance(field, models.CharField | models.TextField | models.JSONField):
                continue
            for needle in needles:
                lookup = f"{field.name}__contains" if not isinstance(field, models.JSONField) else None
                if lookup is None:
                    matches = [
                        row
                        for row in manager.values_list(field.name, flat=True)
                        if row is not None and needle in str(row)
                    ]
                    found = bool(matches)
                else:
                    found = manager.filter(**{lookup: needle}).exists()
                if found:
                    hits.append(f"{model._meta.label}.{field.name} contains {needle}")
    return hits


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []
