from django.apps import AppConfig


class FraudConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "fraud"

    def ready(self) -> None:
        from fraud import (
            checks,  # noqa: F401  (registers the settings check)
            services,
        )
        from scores import events

        # The fraud engine plugs into the score path through the score app's events (scores never
        # imports fraud): the pre-write assessment, the follow-up of an applied submission, and the
        # count of refused action tokens.
        events.set_assessor(services.score_attempt_assess)
        events.on_submission_applied(services.submission_applied)
        events.on_token_rejected(services.token_rejection_record)
