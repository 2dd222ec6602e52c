"""Player registration and JWT session endpoints."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.authentication import token_scopes
from accounts.oidc import ExternalAccessToken
from scoreboard.api import StrictSerializer, envelope, errors, ok

USERNAME_MAX_LENGTH = 50
PASSWORD_MAX_LENGTH = 128
TOKEN_MAX_LENGTH = 2000


class TokenPairOutputSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()
    token_type = serializers.CharField(default="Bearer")
    expires_in = serializers.IntegerField(help_text="Access token lifetime in seconds.")
    user_id = serializers.CharField()


def _token_pair_response(pair: services.TokenPair) -> Response:
    return ok(
        {
            "access": pair.access,
            "refresh": pair.refresh,
            "token_type": "Bearer",
            "expires_in": pair.expires_in,
            "user_id": pair.user_id,
        }
    )


class RegisterApi(APIView):
    authentication_classes: list[type] = []

    class InputSerializer(StrictSerializer):
        username = serializers.RegexField(
            r"^[A-Za-z0-9_.-]+$",
            min_length=3,
            max_length=USERNAME_MAX_LENGTH,
            error_messages={"invalid": "Use letters, digits, '_', '.' or '-'."},
        )
        email = serializers.EmailField(max_length=254)
        password = serializers.CharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)

    class OutputSerializer(serializers.Serializer):
        user_id = serializers.CharField()
        username = serializers.CharField()

    @extend_schema(
        operation_id="auth_register",
        request=InputSerializer,
        responses={201: envelope("RegisterResponse", OutputSerializer()), **errors(400, 409, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_register(**data.validated_data)
        return ok({"user_id": str(user.pk), "username": user.username}, status_code=status.HTTP_201_CREATED)


class LoginApi(APIView):
    authentication_classes: list[type] = []

    class InputSerializer(StrictSerializer):
        username = serializers.CharField(max_length=USERNAME_MAX_LENGTH)
        password = serializers.CharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)

    @extend_schema(
        operation_id="auth_login",
        request=InputSerializer,
        responses={200: envelope("LoginResponse", TokenPairOutputSerializer()), **errors(400, 401, 415)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _token_pair_response(services.user_login(**data.validated_data))


class RefreshInputSerializer(StrictSerializer):
    refresh = serializers.CharField(max_length=TOKEN_MAX_LENGTH)


class RefreshApi(APIView):
    authentication_classes: list[type] = []

    @extend_schema(
        operation_id="auth_refresh",
        request=RefreshInputSerializer,
        responses={200: envelope("RefreshResponse", TokenPairOutputSerializer()), **errors(400, 401, 415)},
    )
    def post(self, request: Request) -> Response:
        data = RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _token_pair_response(services.player_tokens_refresh(refresh_token=data.validated_data["refresh"]))


class LogoutApi(APIView):
    authentication_classes: list[type] = []

    class OutputSerializer(serializers.Serializer):
        logged_out = serializers.BooleanField()

    @extend_schema(
        operation_id="auth_logout",
        request=RefreshInputSerializer,
        responses={200: envelope("LogoutResponse", OutputSerializer()), **errors(400, 401, 415)},
    )
    def post(self, request: Request) -> Response:
        data = RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.player_logout(refresh_token=data.validated_data["refresh"])
        return ok({"logged_out": True})


class MeApi(APIView):
    """Who the bearer token names: our ``user_id`` (what action tokens carry) and the scopes granted.

    A game client signed in with the studio's identity provider asks this once to learn the
    ``user_id`` its game server mints action tokens for.
    """

    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        user_id = serializers.CharField()
        username = serializers.CharField()
        scopes = serializers.ListField(child=serializers.CharField())
        issuer = serializers.CharField(allow_null=True, help_text="The external issuer, or null for our own accounts.")

    @extend_schema(
        operation_id="auth_me",
        responses={200: envelope("MeResponse", OutputSerializer()), **errors(401, 403, 503)},
    )
    def get(self, request: Request) -> Response:
        user = request.user
        external = request.auth if isinstance(request.auth, ExternalAccessToken) else None
        return ok(
            {
                "user_id": str(user.pk),
                "username": user.username,
                "scopes": sorted(token_scopes(request.auth)),
                "issuer": external.issuer.issuer if external is not None else None,
            }
        )


class LogoutAllApi(APIView):
    """Sign out everywhere: every token of the player stops working and their sockets close."""

    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        signed_out = serializers.BooleanField()

    @extend_schema(
        operation_id="auth_logout_all",
        request=None,
        responses={200: envelope("LogoutAllResponse", OutputSerializer()), **errors(401, 403)},
    )
    def post(self, request: Request) -> Response:
        services.player_sessions_revoke(user_id=str(request.user.pk), reason="sign out everywhere")
        return ok({"signed_out": True})
