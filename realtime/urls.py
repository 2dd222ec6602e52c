from django.urls import path

from realtime import views

urlpatterns = [
    path("", views.board_page, name="board-page"),
    path("v1/leaderboard/stream", views.leaderboard_stream, name="leaderboard-stream"),
]
