"""Score endpoints: submit an action, read the board, mint action tokens (game servers)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services as account_services
from accounts.authentication import CanReadScores, CanUpdateScores
from accounts.models import User
from scoreboard.api import StrictSerializer, envelope, errors, ok
from scoreboard.errors import ApiError, Unauthorized
from scoreboard.net import client_ip
from scoreboard.ratelimit import ScoreUpdateRateLimit
from scores import selectors, services
from scores.action_tokens import check_increment

USER_AGENT_MAX_LENGTH = 1000


class MetadataSerializer(StrictSerializer):
    action_type = serializers.ChoiceField(choices=[], required=False)
    level_id = serializers.CharField(max_length=settings.LEVEL_ID_MAX_LENGTH, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        action_type = self.fields["action_type"]
        assert isinstance(action_type, serializers.ChoiceField)
        action_type.choices = sorted(settings.ACTION_TYPES)


class ScoreSubmitApi(APIView):
    permission_classes = [CanUpdateScores]
    throttle_classes = [ScoreUpdateRateLimit]  # per-player and global limits, after auth, before the body

    class InputSerializer(StrictSerializer):
        action_token = serializers.CharField(max_length=settings.ACTION_TOKEN_MAX_LENGTH, trim_whitespace=False)
        metadata = MetadataSerializer(required=False)

    class OutputSerializer(serializers.Serializer):
        user_id = serializers.CharField()
        old_score = serializers.IntegerField()
        new_score = serializers.IntegerField()
        increment = serializers.IntegerField()
        new_rank = serializers.IntegerField(allow_null=True)
        old_rank = serializers.IntegerField(allow_null=True, help_text="null on the player's first score.")

    @extend_schema(
        operation_id="scores_update",
        request=InputSerializer,
        responses={
            200: envelope("ScoreUpdateResponse", OutputSerializer()),
            **errors(400, 401, 403, 409, 413, 415, 429, 503),
        },
        description="Apply a score increment carried by a signed, single-use action token. A replayed "
        "token answers 409 with the original result under error.details.",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assert isinstance(request.user, User)  # guaranteed by CanUpdateScores
        result = services.score_submit(
            user=request.user,
            action_token=data.validated_data["action_token"],
            metadata=data.validated_data.get("metadata"),
            context=services.RequestContext(
                ip_address=client_ip(request.META),
                user_agent=request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX_LENGTH],
            ),
        )
        return ok(result.as_dict())


class LeaderboardRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    user_id = serializers.CharField()
    username = serializers.CharField()
    score = serializers.IntegerField()
    last_updated = serializers.CharField(help_text="When the player reached this score (ISO 8601, UTC).")


class LeaderboardApi(APIView):
    def get_permissions(self) -> list[BasePermission]:
        if settings.LEADERBOARD_REQUIRE_AUTH:
            return [CanReadScores()]
        return [AllowAny()]

    class OutputSerializer(serializers.Serializer):
        leaderboard = LeaderboardRowSerializer(many=True)
        total_players = serializers.IntegerField()
        last_updated = serializers.CharField(allow_null=True)

    @extend_schema(
        operation_id="leaderboard_top",
        parameters=[OpenApiParameter("limit", OpenApiTypes.INT, description="1–100 (default 10; larger is clamped)")],
        responses={200: envelope("LeaderboardResponse", OutputSerializer()), **errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        limit = _parse_limit(request.query_params.get("limit"))
        page = selectors.leaderboard_top(limit=limit)
        return ok(leaderboard_payload(page))


def _parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return settings.LEADERBOARD_DEFAULT_LIMIT
    try:
        if not (raw.isascii() and raw.isdigit()):  # int() would also take " 5", "+5" and non-ASCII digits
            raise ValueError(raw)
        value = int(raw)
    except ValueError as exc:
        raise ApiError("limit must be an integer between 1 and 100.", code="invalid_limit") from exc
    if value < 1:
        raise ApiError("limit must be an integer between 1 and 100.", code="invalid_limit")
    return min(value, settings.LEADERBOARD_MAX_LIMIT)


def leaderboard_payload(page: selectors.BoardPage) -> dict[str, object]:
    return {
        "leaderboard": [row.as_dict() for row in page.rows],
        "total_players": page.total_players,
        "last_updated": page.last_updated,
    }


class ActionMintApi(APIView):
    """Game servers mint action tokens here with their X-API-Key (or offline with the shared secret)."""

    authentication_classes: list[type] = []

    class InputSerializer(StrictSerializer):
        user_id = serializers.UUIDField()
        action_type = serializers.CharField(max_length=50)
        score_increment = serializers.IntegerField()

        def validate(self, attrs: dict[str, object]) -> dict[str, object]:
            check_increment(str(attrs["action_type"]), attrs["score_increment"])
            return attrs

    class OutputSerializer(serializers.Serializer):
        action_token = serializers.CharField()
        action_id = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="actions_mint",
        request=InputSerializer,
        parameters=[OpenApiParameter("X-API-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True)],
        responses={201: envelope("ActionMintResponse", OutputSerializer()), **errors(400, 401, 404, 415)},
    )
    def post(self, request: Request) -> Response:
        raw_key = request.META.get(settings.API_KEY_HEADER, "")
        if not raw_key:
            raise Unauthorized("A valid X-API-Key header is required.", code="invalid_api_key")
        account_services.game_server_authenticate(raw_key=raw_key)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        minted = services.action_token_mint(
            user_id=str(data.validated_data["user_id"]),
            action_type=data.validated_data["action_type"],
            score_increment=data.validated_data["score_increment"],
        )
        return ok(
            {
                "action_token": minted.action_token,
                "action_id": minted.action_id,
                "expires_at": minted.expires_at.isoformat().replace("+00:00", "Z"),
            },
            status_code=status.HTTP_201_CREATED,
        )
