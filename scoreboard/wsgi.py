import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")

django_application = get_wsgi_application()

from scoreboard.fastpath import FastPath  # noqa: E402 - after Django is set up

# The leaderboard's plain reads are answered before Django's machinery (scoreboard/fastpath.py).
application = FastPath(django_application)
