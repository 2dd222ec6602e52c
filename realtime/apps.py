from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "realtime"

    def ready(self) -> None:
        from realtime import hub, services
        from scores import events

        hub.snapshot_reader_set(services.board_snapshot_by_name)
        # The live layer follows the score app's events: it is never called by the score service.
        events.on_score_applied(services.score_applied)
        events.on_board_corrected(services.board_corrected)
        # ...and publishes an update's changes inside the score service's index write (one Redis call).
        events.set_live_script(services.live_script)
