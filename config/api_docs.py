"""A self-contained API reference page, rendered on the server from the OpenAPI schema.

Swagger UI and Redoc load their JavaScript from a CDN, which offline machines
(and strict content-security policies) cannot reach; this page needs nothing
but the schema drf-spectacular already builds.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from drf_spectacular.generators import SchemaGenerator

METHODS = ("get", "post", "put", "patch", "delete")
_BACKTICKS = re.compile(r"`([^`\n]+)`")


def prose(text: str) -> SafeString:
    """The schema's descriptions as HTML: escaped first, then `code` spans and line breaks, nothing else.

    Docstrings use backticks for names and paths; a Markdown library would also turn any `<`, `*` or
    `[...](...)` of a description into markup, which this page has no use for.
    """
    escaped = str(escape(text))
    return mark_safe(_BACKTICKS.sub(r"<code>\1</code>", escaped).replace("\n", "<br>"))  # noqa: S308 (escaped above)


def _schema_name(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    if node.get("type") == "array":
        return f"list of {_schema_name(node.get('items', {})) or node.get('items', {}).get('type', 'items')}"
    return str(node.get("type", ""))


def _body(content: dict[str, Any] | None) -> list[dict[str, str]]:
    return [
        {"media_type": media_type, "schema": _schema_name(spec.get("schema", {}))}
        for media_type, spec in (content or {}).items()
    ]


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    operations = []
    for route, item in schema.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            operations.append(
                {
                    "anchor": operation.get("operationId", f"{method}-{route}"),
                    "method": method.upper(),
                    "path": route,
                    "tag": (operation.get("tags") or ["api"])[0],
                    "summary": operation.get("summary", ""),
                    "description": prose(operation.get("description", "")),
                    "parameters": [
                        {
                            "name": parameter["name"],
                            "in": parameter["in"],
                            "required": parameter.get("required", False),
                            "schema": _schema_name(parameter.get("schema", {})),
                            "description": prose(parameter.get("description", "")),
                        }
                        for parameter in operation.get("parameters", [])
                    ],
                    "request": _body(operation.get("requestBody", {}).get("content")),
                    "responses": [
                        {
                            "status": code,
                            "description": response.get("description", ""),
                            "bodies": _body(response.get("content")),
                        }
                        for code, response in operation.get("responses", {}).items()
                    ],
                }
            )
    return operations


def _components(schema: dict[str, Any]) -> list[dict[str, Any]]:
    components = []
    for name, spec in sorted(schema.get("components", {}).get("schemas", {}).items()):
        required = set(spec.get("required", []))
        components.append(
            {
                "name": name,
                "fields": [
                    {
                        "name": field,
                        "type": _schema_name(field_spec)
                        or ("one of: " + ", ".join(map(str, field_spec.get("enum", [])))),
                        "required": field in required,
                        "read_only": bool(field_spec.get("readOnly")),
                        "description": prose(field_spec.get("description", "")),
                    }
                    for field, field_spec in spec.get("properties", {}).items()
                ],
            }
        )
    return components


@login_required
def api_docs(request: HttpRequest) -> HttpResponse:
    """For signed-in users only, as the schema it renders (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"])."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = _operations(schema)
    tags = sorted({operation["tag"] for operation in operations})
    return render(
        request,
        "api/docs.html",
        {
            "info": schema.get("info", {}),
            "description": prose(schema.get("info", {}).get("description", "")),
            "groups": [
                {"tag": tag, "operations": [op for op in operations if op["tag"] == tag]} for tag in tags
            ],
            "components": _components(schema),
        },
    )
