"""The 400 answer for a request Django refuses before any view runs.

Django raises these while parsing a body (often inside the CSRF check, so no
view can catch them) and would answer with a bare "Bad Request (400)" page,
also to an API client. The three limits a well-meaning client can hit get a
reason it can act on; any other refusal keeps a generic text, because its
details (a host name, a header) are not for the sender.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from config.bodylimit import API_PREFIX


def refusal_reason(exception: Exception | None) -> str:
    if isinstance(exception, TooManyFilesSent):
        return (
            f"Too many files in one request: at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} "
            "per upload. Send the others in another upload."
        )
    if isinstance(exception, TooManyFieldsSent):
        return f"Too many form fields in one request: at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}."
    if isinstance(exception, RequestDataTooBig):
        return (
            f"The form fields are too large: at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes "
            "besides the files."
        )
    return "The request could not be understood."


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    reason = refusal_reason(exception)
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": reason}, status=400)
    return render(request, "400.html", {"reason": reason}, status=400)
