from django.urls import path

from scores import apis

urlpatterns = [
    path("scores/update", apis.ScoreSubmitApi.as_view(), name="scores-update"),
    path("leaderboard", apis.LeaderboardApi.as_view(), name="leaderboard"),
    path("actions", apis.ActionMintApi.as_view(), name="actions-mint"),
]
