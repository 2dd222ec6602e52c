"""Shared pieces of the DRF layer: the success envelope and strict input serializers."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

JWT_SCHEME_NAME = "jwtAuth"


def ok(data: Any, *, status_code: int = status.HTTP_200_OK, headers: dict[str, str] | None = None) -> Response:
    return Response({"success": True, "data": data}, status=status_code, headers=headers)


def ok_json(data: dict[str, Any]) -> HttpResponse:
    """``ok(data)`` rendered by orjson, for a hot endpoint whose answer holds only JSON's own types
    (str, int, bool, None, list, dict): the same bytes as DRF's JSONRenderer (compact, UTF-8), without
    DRF's response and renderer machinery (about 4% of a score update). The view still goes through
    DRF's ``finalize_response`` (its Allow and Vary headers); an error is still DRF's ``Response``."""
    return ok_json_body(ok_body(data))


def ok_body(data: dict[str, Any]) -> bytes:
    """The bytes ``ok_json(data)`` answers with, for a view that keeps them (e.g. with a cached page)."""
    body = orjson.dumps({"success": True, "data": data})
    if b"\xe2\x80" in body:  # DRF escapes U+2028 and U+2029 (JavaScript line terminators)
        body = body.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return body


def ok_json_body(body: bytes) -> HttpResponse:
    """A 200 with ``body`` from ``ok_body``."""
    return HttpResponse(body, content_type="application/json", charset="utf-8")


JSON_ONLY_ACCEPTS = frozenset({"", "*/*", "application/json"})


class JsonNegotiationMixin:
    """For an API view that only speaks JSON: a request that accepts JSON (no Accept header, ``*/*``
    or ``application/json``, the usual case) skips DRF's content negotiation (1.6% of a score
    update); any other Accept header is negotiated by DRF as before (e.g. 406)."""

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        if request.META.get("HTTP_ACCEPT", "") in JSON_ONLY_ACCEPTS:
            renderer = self.get_renderers()[0]  # type: ignore[attr-defined]
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)  # type: ignore[misc]


JSON_CONTENT_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})


def json_body_fast(request: Any) -> Any:
    """The body of a JSON request decoded by orjson, or None when anything is unusual (another
    content type or charset, a body orjson refuses): then the caller reads DRF's ``request.data``,
    whose parser gives every answer and every error as before. Only for a caller that checks the
    decoded value's types itself and sends anything unexpected to DRF's path (orjson reads a huge
    integer literal as a float, DRF as an int)."""
    if request.META.get("CONTENT_TYPE", "").lower() not in JSON_CONTENT_TYPES:
        return None
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return None


# JSON type each kind of field must receive. DRF would coerce 123 into "123" or "7" into 7; a strict
# API refuses the wrong type instead, so clients find their bugs at once.
_JSON_TYPES: tuple[tuple[type[serializers.Field], type | tuple[type, ...], str], ...] = (
    (serializers.BooleanField, bool, "Expected a boolean."),
    (serializers.IntegerField, int, "Expected an integer."),
    (serializers.CharField, str, "Expected a string."),
    (serializers.ChoiceField, str, "Expected a string."),
    (serializers.UUIDField, str, "Expected a string."),
    (serializers.DateTimeField, str, "Expected a string."),
)


def _type_error(field: serializers.Field, value: Any) -> str | None:
    if value is None:
        return None  # DRF's own null handling answers
    for kind, expected, message in _JSON_TYPES:
        if isinstance(field, kind):
            wrong = not isinstance(value, expected) or (expected is int and isinstance(value, bool))
            return message if wrong else None
    return None


class StrictSerializer(serializers.Serializer):
    """Rejects unknown fields and values of the wrong JSON type instead of ignoring or coercing them."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        wrong_types = {
            name: [message]
            for name, field in self.fields.items()
            if name in data and (message := _type_error(field, data[name])) is not None
        }
        if wrong_types:
            raise serializers.ValidationError(wrong_types)
        return super().to_internal_value(data)


def envelope(name: str, data: serializers.Serializer) -> Any:
    """OpenAPI: the success envelope around ``data``."""
    return inline_serializer(name=name, fields={"success": serializers.BooleanField(), "data": data})


_ErrorDetail = inline_serializer(
    name="ErrorDetail",
    fields={
        "code": serializers.CharField(),
        "message": serializers.CharField(),
        "details": serializers.JSONField(allow_null=True),
    },
)
ErrorEnvelope = inline_serializer(
    name="ErrorEnvelope", fields={"success": serializers.BooleanField(default=False), "error": _ErrorDetail}
)


# Every /v1/ endpoint can answer these, whatever the view: the per-IP rate limit and the body-size
# guard are middleware in front of all of them (scoreboard.ratelimit, scoreboard.middleware).
ALWAYS_POSSIBLE_ERRORS = (413, 429)


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """OpenAPI: the error envelope for each status code listed (and those every endpoint can answer)."""
    descriptions = {
        400: "Invalid request body or parameters.",
        401: "Missing, expired or forged credentials.",
        403: "Authenticated but not allowed (scope, disabled account, another player's token).",
        404: "Not found.",
        409: "Conflict (already exists, or a replayed action token).",
        413: "Request body over 64 KB.",
        415: "Content type is not application/json.",
        429: "Rate limited (per IP on every endpoint; per player and global on score updates) or blocked "
        "by the fraud engine; the Retry-After header says when to retry.",
        503: "A backing service is unavailable; nothing was applied.",
    }
    return {
        code: OpenApiResponse(ErrorEnvelope, description=descriptions[code])
        for code in sorted({*codes, *ALWAYS_POSSIBLE_ERRORS})
    }


class AutoSchema(SpectacularAutoSchema):
    """Names components after their view: every view nests ``InputSerializer``/``OutputSerializer``
    (STYLE.md), so the bare class names would collide (``RegisterApi.InputSerializer`` becomes
    ``RegisterInput``, ``ScoreSubmitApi.OutputSerializer`` becomes ``ScoreSubmitOutput``)."""

    def _get_response_headers_for_code(self, status_code: Any, direction: Any = "response") -> dict[str, Any]:
        headers: dict[str, Any] = super()._get_response_headers_for_code(status_code, direction)
        if str(status_code) == "429":  # every refusal says when to retry (DESIGN: "Every 429 carries Retry-After")
            headers["Retry-After"] = {
                "schema": {"type": "integer", "minimum": 1},
                "description": "Seconds to wait before retrying.",
            }
        return headers

    def get_serializer_name(self, serializer: serializers.Serializer, direction: Any) -> str:
        owner, _, name = type(serializer).__qualname__.rpartition(".")
        if not owner or "<locals>" in owner:
            return name
        owner = owner.rpartition(".")[2]
        return owner.removesuffix("Api") + name


class ScopedJWTAuthenticationScheme(OpenApiAuthenticationExtension):
    """OpenAPI security scheme for the players' JWT (``Authorization: Bearer <access token>``)."""

    target_class = "accounts.authentication.ScopedJWTAuthentication"
    name = JWT_SCHEME_NAME

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        definition = build_bearer_security_scheme_object(
            header_name="HTTP_AUTHORIZATION", token_prefix="Bearer", bearer_format="JWT"
        )
        definition["description"] = (
            "Access token from POST /v1/auth/login or /v1/auth/refresh. Its `scope` claim grants "
            "`read:scores` and `update:scores`. Missing, expired or forged → 401; disabled player or "
            "missing scope → 403."
        )
        return definition


class StrictSerializerSchema(OpenApiSerializerExtension):
    """OpenAPI: request bodies of strict serializers say ``additionalProperties: false``, as enforced."""

    target_class = StrictSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema
