"""The spectator page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from scores import selectors


def board_page(request: HttpRequest) -> HttpResponse:
    page = selectors.leaderboard_top(limit=settings.LEADERBOARD_DEFAULT_LIMIT)
    return render(request, "board.html", {"page": page})
