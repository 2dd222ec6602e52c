from django.urls import path

from realtime import views

urlpatterns = [
    path("", views.board_page, name="board-page"),
]
