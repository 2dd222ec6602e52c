from django.urls import path

from realtime import views

urlpatterns = [
    path("", views.board_page, name="board-page"),
    path("boards/<slug:board_id>/", views.board_page, name="board-page-one"),
    path("v1/leaderboard/stream", views.leaderboard_stream, name="leaderboard-stream"),
]
