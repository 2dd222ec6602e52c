from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class PingApi(APIView):
    def get(self, request: Request) -> Response:
        return Response({"success": True, "data": {"pong": True}})


urlpatterns = [path("ping", PingApi.as_view())]
