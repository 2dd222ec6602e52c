from django.apps import AppConfig


class ScoresConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "scores"

    def ready(self) -> None:
        from scoreboard import checks  # noqa: F401  (registers the system checks)
        from scoreboard.redis import on_reconnect
        from scores.recovery import index_repair_on_reconnect

        on_reconnect(index_repair_on_reconnect)
