"""What in a cassette's data breaks the format (version 1): a hand edit found when the
cassette is loaded, named by its interaction and field, rather than met at replay as
a ``KeyError`` or a base64 error that names neither the file nor the field."""

from __future__ import annotations

import base64
import binascii
from typing import Any

__all__ = ["malformed"]

_STATUSES = range(100, 1000)  # three digits, as HTTP/1.1 sends them


def malformed(data: dict[str, Any]) -> str | None:
    """What in a cassette's data breaks the format, or None."""
    interactions = data.get("interactions", [])
    if not isinstance(interactions, list):
        return f"'interactions' must be a list, got {type(interactions).__name__}"
    redacted = data.get("redacted_params", [])
    if not isinstance(redacted, list) or not all(isinstance(p, str) for p in redacted):
        return "'redacted_params' must be a list of strings"
    for index, entry in enumerate(interactions):
        problem = _entry(entry)
        if problem is not None:
            return f"interaction {index} {problem}"
    return None


def _entry(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"must be an object, got {type(entry).__name__}"
    error = entry.get("error")
    if error is not None and not _error_shaped(error):
        return ("has an 'error' without a string 'module' and 'type', or with a 'message' "
                "not a string or 'args' not a list")
    kind = entry.get("kind")
    if kind == "call":
        return _call(entry)
    if kind != "http":
        return f"has kind {kind!r}; 'call' and 'http' are valid"
    request, response = entry.get("request"), entry.get("response")
    if not (isinstance(request, dict) and isinstance(request.get("method"), str)
            and isinstance(request.get("url"), str)):
        return "(http) needs a 'request' with a string 'method' and 'url'"
    problem = _message("request", request, repeats=False)
    if problem is not None:
        return problem
    if response is None and error is not None:
        return None
    if not (isinstance(response, dict) and type(response.get("status")) is int
            and response["status"] in _STATUSES):
        return ("(http) needs an 'error', or a 'response' with an integer 'status' "
                "from 100 to 999")
    if "body" not in response and "body_refused" not in response:
        return "(http) has a 'response' without a 'body'"
    return _message("response", response, repeats=True) or _response_ending(response)


def _call(entry: dict[str, Any]) -> str | None:
    if not isinstance(entry.get("name"), str):
        return "(a call) has no string 'name'"
    if not isinstance(entry.get("args", []), list) or not isinstance(
            entry.get("kwargs", {}), dict):
        return "(a call) needs 'args' as a list and 'kwargs' as an object"
    for field in ("args", "kwargs", "result"):
        problem = _value(entry.get(field))
        if problem is not None:
            return f"(a call) has in its {field!r} {problem}"
    return None


def _message(what: str, message: dict[str, Any], *, repeats: bool) -> str | None:
    """The problem of a request's or response's ``headers`` and ``body``, or None. A
    response's repeated header (``set-cookie``) is a list of strings; a request's
    headers are stored joined, as httpx gives them."""
    headers = message.get("headers", {})
    if not isinstance(headers, dict) or not all(
            isinstance(v, str) or (repeats and isinstance(v, list)
                                   and all(isinstance(i, str) for i in v))
            for v in headers.values()):
        listed = " (a list of strings for a repeated header)" if repeats else ""
        return f"(http) needs the {what}'s 'headers' as an object of strings{listed}"
    body = message.get("body", {"text": ""})
    problem = _body(body)
    if problem is not None:
        return f"(http) has a {what} 'body' {problem}"
    return None


def _body(body: Any) -> str | None:
    if not isinstance(body, dict) or len(body) != 1 or not (
            isinstance(body.get("text"), str) or isinstance(body.get("base64"), str)):
        return 'that is not {"text": a string} or {"base64": a string}'
    if "base64" in body and not _is_base64(body["base64"]):
        return "whose 'base64' is not base64"
    return None


def _response_ending(response: dict[str, Any]) -> str | None:
    refused = response.get("body_refused")
    if refused is not None and (type(refused) is not int or refused < 1):
        return "(http) has a 'body_refused' that is not a number of bytes"
    if not (_error_shaped(response.get("body_error", {"module": "", "type": "?"}))
            and isinstance(response.get("body_cut", False), bool)):
        return "(http) has a malformed 'body_error', or a 'body_cut' not true or false"
    return None


def _value(data: Any) -> str | None:
    """The problem of a stored value (its ``$bytes`` and ``$repr`` tags), or None."""
    if isinstance(data, list):
        return next((p for p in map(_value, data) if p is not None), None)
    if not isinstance(data, dict):
        return None
    if set(data) == {"$bytes"}:
        good = isinstance(data["$bytes"], str) and _is_base64(data["$bytes"])
        return None if good else "a '$bytes' that is not a base64 string"
    if set(data) == {"$repr"}:
        return None if isinstance(data["$repr"], str) else "a '$repr' that is not a string"
    return next((p for p in map(_value, data.values()) if p is not None), None)


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: a character beyond ASCII
        return False
    return True


def _error_shaped(error: Any) -> bool:
    return (isinstance(error, dict) and isinstance(error.get("module"), str)
            and isinstance(error.get("type"), str) and error["type"] != ""
            and isinstance(error.get("message", ""), str)
            and isinstance(error.get("args", []), list)
            and isinstance(error.get("attributes", {}), dict))
