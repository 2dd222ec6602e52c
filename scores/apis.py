"""Score endpoints: submit an action, read the board, mint action tokens (game servers)."""

from __future__ import annotations

import csv
import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import cards
from accounts import services as account_services
from accounts.authentication import (
    CanReadScores,
    CanUpdateScores,
    ScopedJWTAuthentication,
    SessionCheck,
    player_checked,
    token_epoch,
)
from accounts.models import User
from scoreboard.api import (
    JsonNegotiationMixin,
    StrictSerializer,
    envelope,
    errors,
    json_body_fast,
    ok,
    ok_body,
    ok_json,
    ok_json_body,
)
from scoreboard.errors import ApiError, NotFound, Unauthorized
from scoreboard.net import client_ip
from scoreboard.ratelimit import PendingLimits, ScoreUpdateRateLimit, pending_limits
from scores import board_services, registry, selectors, services
from scores.action_tokens import check_increment
from scores.boards import (
    BOARD_ID_MAX_LENGTH,
    OPERATORS,
    PERIOD_KEY_MAX_LENGTH,
    PERIODS,
    SORTS,
    TIE_POLICIES,
    BoardSpec,
    Period,
)

USER_AGENT_MAX_LENGTH = 1000


class MetadataSerializer(StrictSerializer):
    action_type = serializers.ChoiceField(choices=[], required=False)
    level_id = serializers.CharField(max_length=settings.LEVEL_ID_MAX_LENGTH, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        action_type = self.fields["action_type"]
        assert isinstance(action_type, serializers.ChoiceField)
        action_type.choices = sorted(settings.ACTION_TYPES)


class BoardResultSerializer(serializers.Serializer):
    board = serializers.CharField()
    period = serializers.CharField()
    old_score = serializers.IntegerField(allow_null=True)
    new_score = serializers.IntegerField()
    old_rank = serializers.IntegerField(allow_null=True)
    new_rank = serializers.IntegerField(allow_null=True)


def _plain_text(value: object, max_length: int) -> bool:
    """A string DRF's CharField would take exactly as it is (non-blank, no null, no surrounding space)."""
    return (
        type(value) is str
        and 0 < len(value) <= max_length
        and value.isascii()
        and "\x00" not in value
        and value == value.strip()
    )


def submit_input_fast(data: object) -> tuple[str, dict[str, str] | None] | None:
    """The usual valid score-update body, checked by hand: (action_token, metadata or None).

    None for anything else, which then goes to ``ScoreSubmitApi.InputSerializer``: every error
    answer still comes from the serializer, and whatever this accepts the serializer accepts with
    the same values (tests/scores/test_submit_input.py holds the two side by side). Saves the
    serializer's field machinery on every update.
    """
    if type(data) is not dict or not 1 <= len(data) <= 2:
        return None
    token = data.get("action_token")
    if not _plain_text(token, settings.ACTION_TOKEN_MAX_LENGTH):
        return None
    assert isinstance(token, str)
    if len(data) == 1:
        return token, None
    meta = data.get("metadata")
    if type(meta) is not dict or not set(meta) <= {"action_type", "level_id"}:
        return None
    out: dict[str, str] = {}
    if "action_type" in meta:
        if type(meta["action_type"]) is not str or meta["action_type"] not in settings.ACTION_TYPES:
            return None
        out["action_type"] = meta["action_type"]
    if "level_id" in meta:
        if not _plain_text(meta["level_id"], settings.LEVEL_ID_MAX_LENGTH):
            return None
        out["level_id"] = meta["level_id"]
    return token, out


class ScoreSubmitApi(JsonNegotiationMixin, APIView):
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
        boards = BoardResultSerializer(many=True, help_text="One per board the action fed (global included).")

    def get_authenticators(self) -> list[Any]:
        # With Redis, the player's card vouches for them in the update's pre-write call (accounts.cards).
        return [ScopedJWTAuthentication(cards=True)]

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
    def post(self, request: Request) -> HttpResponseBase:
        user = request.user
        assert isinstance(user, User)  # guaranteed by CanUpdateScores
        context = services.RequestContext(
            ip_address=client_ip(request.META),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX_LENGTH],
            limits=pending_limits(request._request),
            card=(
                cards.CardCheck(user, epoch=token_epoch(request.auth), lookup=player_checked)
                if cards.is_pending(user)
                else None
            ),
            session=SessionCheck.of(request.auth),
        )
        try:
            body = json_body_fast(request)
            fast = submit_input_fast(body if body is not None else request.data)
            if fast is None:  # anything unusual, and every error, is the serializer's to answer
                data = self.InputSerializer(data=request.data)
                data.is_valid(raise_exception=True)
                fast = data.validated_data["action_token"], data.validated_data.get("metadata")
        except APIException:
            services.vouch(context)  # a player no card vouched for yet: 401 / 403 come first
            raise
        action_token, metadata = fast
        result = services.score_submit(user=user, action_token=action_token, metadata=metadata, context=context)
        return ok_json(result.as_dict())  # ints, strings, None: JSON's own types


class LeaderboardRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    user_id = serializers.CharField()
    username = serializers.CharField()
    score = serializers.IntegerField()
    last_updated = serializers.CharField(help_text="When the player reached this score (ISO 8601, UTC).")


class LeaderboardApi(JsonNegotiationMixin, APIView):
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
    def get(self, request: Request) -> HttpResponseBase:
        # The per-IP hit, counted in the index read's round trip.
        body, _ = leaderboard_top_body(request.query_params.get("limit"), pending_limits(request._request))
        return ok_json_body(body)


def leaderboard_top_body(raw_limit: str | None, limits: PendingLimits | None) -> tuple[bytes, selectors.BoardPage]:
    """The 200 body of ``GET /v1/leaderboard?limit=raw_limit`` and its page: the view's work, and
    the WSGI fast path's (``scoreboard.fastpath``). ``limits``: the request's pending per-IP hit."""
    limit = _parse_limit(raw_limit)
    page = selectors.leaderboard_top(limit=limit, counters=limits)
    if limits is not None:
        limits.flush()  # a no-op once counted
    return _rendered(page, "leaderboard", lambda: leaderboard_payload(page)), page


def _rendered(page: selectors.BoardPage, name: str, payload: Callable[[], dict[str, Any]], keep: bool = True) -> bytes:
    """``ok_body`` of ``payload()`` (JSON's own types only), kept with the page when ``keep``: an
    unchanged board comes back from the page cache with the bytes it was first answered with."""
    body = page.rendered.get(name) if keep else None
    if body is None:
        body = ok_body(payload())
        if keep:
            page.rendered[name] = body
    return body


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


# ---------------------------------------------------------------------------------------------
# Boards (DESIGN.md "Boards")
# ---------------------------------------------------------------------------------------------
ME = "me"
AROUND_DEFAULT = 5
AROUND_MAX = 50
LOOKUP_MAX_IDS = 500


def _public_read(view: APIView) -> list[BasePermission]:
    if settings.LEADERBOARD_REQUIRE_AUTH:
        return [CanReadScores()]
    return [AllowAny()]


def _board_or_404(board_id: str) -> BoardSpec:
    spec = selectors.board_get(board_id)
    if spec is None or not spec.is_active:
        raise NotFound(f"No active board {board_id!r}.", code="unknown_board")
    return spec


def _viewer_id(request: Request) -> str | None:
    user = request.user
    return str(user.pk) if isinstance(user, User) else None


def _subject(request: Request, user_id: str) -> str:
    """``me`` → the JWT subject (401 without one); otherwise a player's UUID (404 when malformed)."""
    if user_id == ME:
        viewer = _viewer_id(request)
        if viewer is None:
            raise Unauthorized("'me' needs an access token (Authorization: Bearer ...).", code="not_authenticated")
        return viewer
    try:
        return str(uuid.UUID(user_id))
    except ValueError as exc:
        raise NotFound("No player with that user_id.", code="not_ranked") from exc


def _parse_bounded(raw: str | None, *, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not (low <= int(raw) <= high):
        raise ApiError(f"{name} must be an integer between {low} and {high}.", code=f"invalid_{name}")
    return int(raw)


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def _period_of(request: Request, spec: BoardSpec, raw: str | None = None) -> Period:
    value = raw if raw is not None else request.query_params.get("period")
    return selectors.period_resolve(spec=spec, value=value)


def board_payload(spec: BoardSpec, *, entry_count: int | None = None) -> dict[str, object]:
    period = spec.period_at(timezone.now())
    return {
        "id": spec.id,
        "title": spec.title,
        "sort": spec.sort,
        "operator": spec.operator,
        "period": spec.period,
        "cron": spec.cron,
        "tie_policy": spec.tie_policy,
        "action_types": sorted(spec.action_types),
        "keep_periods": spec.keep_periods,
        "is_active": spec.is_active,
        "metadata": spec.metadata,
        "starts_at": _iso(spec.starts_at),
        "ends_at": _iso(spec.ends_at),
        "current_period": {"key": period.key, "starts_at": _iso(period.starts_at), "ends_at": _iso(period.ends_at)},
        "next_reset": _iso(period.ends_at),
        "entry_count": entry_count,
    }


class PeriodSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="all, 2026-12-01, 2026-W49, 2026-12 or a cron start (2026-12-02T06:00Z)")
    starts_at = serializers.CharField(allow_null=True)
    ends_at = serializers.CharField(allow_null=True)


class PeriodStatusSerializer(PeriodSerializer):
    closed = serializers.BooleanField(help_text="Final: the standings are frozen.")
    corrected = serializers.BooleanField(help_text="A moderator corrected it after it closed.")


class BoardSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField()
    sort = serializers.ChoiceField(choices=SORTS)
    operator = serializers.ChoiceField(choices=OPERATORS)
    period = serializers.ChoiceField(choices=PERIODS)
    cron = serializers.CharField()
    tie_policy = serializers.ChoiceField(choices=TIE_POLICIES)
    action_types = serializers.ListField(child=serializers.CharField())
    keep_periods = serializers.IntegerField()
    is_active = serializers.BooleanField()
    metadata = serializers.JSONField()
    starts_at = serializers.CharField(allow_null=True)
    ends_at = serializers.CharField(allow_null=True)
    current_period = PeriodSerializer()
    next_reset = serializers.CharField(allow_null=True)
    entry_count = serializers.IntegerField(allow_null=True)


class BoardInputSerializer(StrictSerializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    sort = serializers.ChoiceField(choices=SORTS, required=False)
    operator = serializers.ChoiceField(choices=OPERATORS, required=False)
    period = serializers.ChoiceField(choices=PERIODS, required=False)
    cron = serializers.CharField(max_length=100, required=False, allow_blank=True)
    tie_policy = serializers.ChoiceField(choices=TIE_POLICIES, required=False)
    action_types = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=50)
    keep_periods = serializers.IntegerField(min_value=0, max_value=100_000, required=False)
    is_active = serializers.BooleanField(required=False)
    metadata = serializers.JSONField(required=False)
    starts_at = serializers.DateTimeField(required=False, allow_null=True)
    ends_at = serializers.DateTimeField(required=False, allow_null=True)


class BoardCreateSerializer(BoardInputSerializer):
    id = serializers.CharField(max_length=BOARD_ID_MAX_LENGTH)


def _game_server(request: Request) -> None:
    raw_key = request.META.get(settings.API_KEY_HEADER, "")
    if not raw_key:
        raise Unauthorized("A valid X-API-Key header is required.", code="invalid_api_key")
    account_services.game_server_authenticate(raw_key=raw_key)


class BoardListApi(APIView):
    """GET: the active boards. POST (game-server key): create a board."""

    def get_authenticators(self) -> list[Any]:
        if getattr(self, "request", None) is not None and self.request.method == "POST":
            return []
        return super().get_authenticators()

    def get_permissions(self) -> list[BasePermission]:
        if self.request.method == "POST":
            return [AllowAny()]  # the game-server key is checked in post()
        return _public_read(self)

    @extend_schema(
        operation_id="boards_list",
        responses={
            200: envelope("BoardListResponse", inline_serializer("BoardList", {"boards": BoardSerializer(many=True)})),
            **errors(401, 403),
        },
    )
    def get(self, request: Request) -> Response:
        specs = selectors.boards_active()
        counts = selectors.entry_counts(specs=specs)
        return ok({"boards": [board_payload(s, entry_count=counts.get(s.id)) for s in specs]})

    @extend_schema(
        operation_id="boards_create",
        request=BoardCreateSerializer,
        parameters=[OpenApiParameter("X-API-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True)],
        responses={201: envelope("BoardCreateResponse", BoardSerializer()), **errors(400, 401, 409, 415)},
    )
    def post(self, request: Request) -> Response:
        _game_server(request)
        data = BoardCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        board = board_services.board_create(board_id=fields.pop("id"), **fields)
        registry.boards_cache_clear()
        spec = selectors.board_get(board.id)
        assert spec is not None
        return ok(board_payload(spec, entry_count=0), status_code=status.HTTP_201_CREATED)


class BoardDetailApi(APIView):
    """GET: one board. PATCH (game-server key): edit it."""

    def get_authenticators(self) -> list[Any]:
        if getattr(self, "request", None) is not None and self.request.method == "PATCH":
            return []
        return super().get_authenticators()

    def get_permissions(self) -> list[BasePermission]:
        if self.request.method == "PATCH":
            return [AllowAny()]
        return _public_read(self)

    @extend_schema(
        operation_id="boards_get",
        responses={200: envelope("BoardResponse", BoardSerializer()), **errors(401, 403, 404)},
    )
    def get(self, request: Request, board_id: str) -> Response:
        spec = _board_or_404(board_id)
        return ok(board_payload(spec, entry_count=selectors.entry_counts(specs=[spec]).get(spec.id)))

    @extend_schema(
        operation_id="boards_update",
        request=BoardInputSerializer,
        parameters=[OpenApiParameter("X-API-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True)],
        responses={200: envelope("BoardUpdateResponse", BoardSerializer()), **errors(400, 401, 404, 409, 415)},
    )
    def patch(self, request: Request, board_id: str) -> Response:
        _game_server(request)
        data = BoardInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        board_services.board_update(board_id=board_id, **data.validated_data)
        registry.boards_cache_clear()
        spec = selectors.board_get(board_id)
        assert spec is not None
        return ok(board_payload(spec, entry_count=selectors.entry_counts(specs=[spec]).get(spec.id)))


PERIOD_PARAM = OpenApiParameter(
    "period", OpenApiTypes.STR, description="current (default), previous, or a period key (e.g. 2026-W49)"
)


class BoardEntriesApi(JsonNegotiationMixin, APIView):
    get_permissions = _public_read

    class OutputSerializer(serializers.Serializer):
        entries = LeaderboardRowSerializer(many=True)
        entry_count = serializers.IntegerField()
        next_cursor = serializers.CharField(allow_null=True, help_text="Opaque; pass as ?cursor= for the next page.")
        period = PeriodStatusSerializer()

    @extend_schema(
        operation_id="boards_entries",
        parameters=[
            OpenApiParameter("limit", OpenApiTypes.INT, description="1–100 (default 10; larger is clamped)"),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="next_cursor of the previous page"),
            PERIOD_PARAM,
        ],
        responses={200: envelope("BoardEntriesResponse", OutputSerializer()), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, board_id: str) -> HttpResponseBase:
        params = request.query_params
        body, _ = board_entries_body(
            board_id,
            raw_limit=params.get("limit"),
            cursor=params.get("cursor") or None,
            raw_period=params.get("period"),
            limits=pending_limits(request._request),  # the per-IP hit, counted in the index read's round trip
        )
        return ok_json_body(body)


def board_entries_body(
    board_id: str, *, raw_limit: str | None, cursor: str | None, raw_period: str | None, limits: PendingLimits | None
) -> tuple[bytes, selectors.BoardPage]:
    """The 200 body of ``GET /v1/boards/{board_id}/entries`` and its page: the view's work, and the
    WSGI fast path's (``scoreboard.fastpath``)."""
    spec = _board_or_404(board_id)
    period = selectors.period_resolve(spec=spec, value=raw_period)
    limit = _parse_limit(raw_limit)
    page = selectors.board_page(spec=spec, period=period, limit=limit, cursor=cursor, counters=limits)
    if limits is not None:
        limits.flush()  # a no-op once counted (a cursor page's read does not carry it)
    # An ended period's status (closed, corrected) comes from the database at every read.
    body = _rendered(
        page,
        "entries",
        lambda: {
            "entries": [row.as_dict() for row in page.rows],
            "entry_count": page.total_players,
            "next_cursor": page.next_cursor,
            "period": selectors.period_payload(spec=spec, period=period),
        },
        keep=not period.ended(timezone.now()),
    )
    return body, page


class StandingSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    score = serializers.IntegerField()
    entry_count = serializers.IntegerField()
    percentile = serializers.FloatField(help_text="Share of the board at or below the player (100 = the top).")
    last_updated = serializers.CharField()


def standing_payload(standing: selectors.Standing) -> dict[str, object]:
    return {
        "rank": standing.rank,
        "user_id": standing.user_id,
        "username": standing.username,
        "score": standing.score,
        "entry_count": standing.entry_count,
        "percentile": standing.percentile,
        "last_updated": standing.last_updated,
    }


class BoardPlayerApi(APIView):
    get_permissions = _public_read

    @extend_schema(
        operation_id="boards_player",
        parameters=[PERIOD_PARAM],
        responses={200: envelope("BoardPlayerResponse", StandingSerializer()), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, board_id: str, user_id: str) -> Response:
        spec = _board_or_404(board_id)
        subject = _subject(request, user_id)
        standing = selectors.player_standing(
            spec=spec, period=_period_of(request, spec), user_id=subject, viewer_id=_viewer_id(request)
        )
        return ok(standing_payload(standing))


class BoardAroundApi(APIView):
    get_permissions = _public_read

    class OutputSerializer(serializers.Serializer):
        player = StandingSerializer()
        entries = LeaderboardRowSerializer(many=True)
        period = PeriodStatusSerializer()

    @extend_schema(
        operation_id="boards_around",
        parameters=[
            OpenApiParameter("above", OpenApiTypes.INT, description=f"0–{AROUND_MAX} (default {AROUND_DEFAULT})"),
            OpenApiParameter("below", OpenApiTypes.INT, description=f"0–{AROUND_MAX} (default {AROUND_DEFAULT})"),
            PERIOD_PARAM,
        ],
        responses={200: envelope("BoardAroundResponse", OutputSerializer()), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, board_id: str, user_id: str) -> Response:
        spec = _board_or_404(board_id)
        subject = _subject(request, user_id)
        above = _parse_bounded(
            request.query_params.get("above"), name="above", default=AROUND_DEFAULT, low=0, high=AROUND_MAX
        )
        below = _parse_bounded(
            request.query_params.get("below"), name="below", default=AROUND_DEFAULT, low=0, high=AROUND_MAX
        )
        period = _period_of(request, spec)
        me, rows = selectors.around_player(
            spec=spec, period=period, user_id=subject, above=above, below=below, viewer_id=_viewer_id(request)
        )
        return ok(
            {
                "player": standing_payload(me),
                "entries": [row.as_dict() for row in rows],
                "period": selectors.period_payload(spec=spec, period=period),
            }
        )


class BoardLookupApi(APIView):
    """Friends, a clan: these players' entries with their board rank and their rank within the set."""

    get_permissions = _public_read

    class InputSerializer(StrictSerializer):
        user_ids = serializers.ListField(child=serializers.UUIDField(), max_length=LOOKUP_MAX_IDS, allow_empty=False)
        period = serializers.CharField(max_length=PERIOD_KEY_MAX_LENGTH, required=False)

    class RowSerializer(serializers.Serializer):
        rank = serializers.IntegerField()
        rank_in_set = serializers.IntegerField()
        user_id = serializers.CharField()
        username = serializers.CharField()
        score = serializers.IntegerField()
        last_updated = serializers.CharField()

    class OutputSerializer(serializers.Serializer):
        entries = serializers.ListField(child=serializers.DictField())
        not_found = serializers.ListField(child=serializers.CharField())
        period = PeriodStatusSerializer()

    @extend_schema(
        operation_id="boards_lookup",
        request=InputSerializer,
        responses={200: envelope("BoardLookupResponse", OutputSerializer()), **errors(400, 401, 403, 404, 415)},
    )
    def post(self, request: Request, board_id: str) -> Response:
        spec = _board_or_404(board_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        period = _period_of(request, spec, data.validated_data.get("period", ""))
        rows, not_found = selectors.board_lookup(
            spec=spec,
            period=period,
            user_ids=[str(u) for u in data.validated_data["user_ids"]],
            viewer_id=_viewer_id(request),
        )
        return ok(
            {
                "entries": [{**standing_payload(r.standing), "rank_in_set": r.rank_in_set} for r in rows],
                "not_found": not_found,
                "period": selectors.period_payload(spec=spec, period=period),
            }
        )


class PlayerStandingsApi(APIView):
    get_permissions = _public_read

    class RowSerializer(StandingSerializer):
        board = serializers.CharField()
        period = serializers.CharField()

    class OutputSerializer(serializers.Serializer):
        user_id = serializers.CharField()
        standings = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        operation_id="players_standings",
        responses={200: envelope("PlayerStandingsResponse", OutputSerializer()), **errors(401, 403, 404)},
    )
    def get(self, request: Request, user_id: str) -> Response:
        subject = _subject(request, user_id)
        standings = selectors.player_board_standings(user_id=subject, viewer_id=_viewer_id(request))
        return ok(
            {
                "user_id": subject,
                "standings": [
                    {"board": s.spec.id, "title": s.spec.title, "period": s.period.key, **standing_payload(s.standing)}
                    for s in standings
                ],
            }
        )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(rows: Iterable[selectors.BoardRow]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(["rank", "user_id", "username", "score", "last_updated"])
    for row in rows:
        yield writer.writerow([row.rank, row.user_id, row.username, row.score, row.last_updated])


class BoardExportApi(APIView):
    """Every entry of a period as CSV, streamed (a staff session or a game-server key)."""

    def get_permissions(self) -> list[BasePermission]:
        return [AllowAny()]  # checked in get(): staff session or X-API-Key

    @extend_schema(
        operation_id="boards_export",
        parameters=[
            PERIOD_PARAM,
            OpenApiParameter("X-API-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR, **errors(400, 401, 404)},
    )
    def get(self, request: Request, board_id: str) -> StreamingHttpResponse:
        user = get_user(request._request)  # the session's user (staff in admin), not the JWT's
        if not (user.is_authenticated and user.is_staff):
            _game_server(request)
        spec = _board_or_404(board_id)
        period = _period_of(request, spec)
        response = StreamingHttpResponse(
            _csv_lines(selectors.export_rows(spec=spec, period=period)), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{spec.id}-{period.key}.csv"'
        return response
