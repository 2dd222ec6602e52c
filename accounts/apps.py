from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from accounts import cards
        from accounts.models import User, players_updated

        def card_drop(sender: type, instance: User, created: bool = False, **kwargs: object) -> None:
            if not created:  # a new player has no card yet
                cards.cards_drop([instance.pk])

        def cards_drop(sender: type, ids: list[object], **kwargs: object) -> None:
            cards.cards_drop(ids)

        # Every change of a player's row through a model drops their card (queryset updates:
        # accounts.models.PlayerQuerySet).
        post_save.connect(card_drop, sender=User, dispatch_uid="accounts.card_drop.save", weak=False)
        post_delete.connect(card_drop, sender=User, dispatch_uid="accounts.card_drop.delete", weak=False)
        players_updated.connect(cards_drop, sender=User, dispatch_uid="accounts.card_drop.update", weak=False)
