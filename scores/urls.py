from django.urls import path

from scores import apis

urlpatterns = [
    path("scores/update", apis.ScoreSubmitApi.as_view(), name="scores-update"),
    path("leaderboard", apis.LeaderboardApi.as_view(), name="leaderboard"),
    path("actions", apis.ActionMintApi.as_view(), name="actions-mint"),
    path("boards", apis.BoardListApi.as_view(), name="boards"),
    path("boards/<slug:board_id>", apis.BoardDetailApi.as_view(), name="board"),
    path("boards/<slug:board_id>/entries", apis.BoardEntriesApi.as_view(), name="board-entries"),
    path("boards/<slug:board_id>/players/<str:user_id>", apis.BoardPlayerApi.as_view(), name="board-player"),
    path("boards/<slug:board_id>/around/<str:user_id>", apis.BoardAroundApi.as_view(), name="board-around"),
    path("boards/<slug:board_id>/lookup", apis.BoardLookupApi.as_view(), name="board-lookup"),
    path("boards/<slug:board_id>/export.csv", apis.BoardExportApi.as_view(), name="board-export"),
    path("players/<str:user_id>/standings", apis.PlayerStandingsApi.as_view(), name="player-standings"),
]
