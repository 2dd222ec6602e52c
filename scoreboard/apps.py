from django.apps import AppConfig


class ScoreboardConfig(AppConfig):
    """The project package as an app: process-wide wiring that must happen once Django is ready."""

    name = "scoreboard"
    verbose_name = "Scoreboard (project)"

    def ready(self) -> None:
        from scoreboard import jwt_keys, jwt_rotation
        from scoreboard import logging as sb_logging

        jwt_keys.install()
        jwt_rotation.install()
        sb_logging.install_celery_request_ids()
