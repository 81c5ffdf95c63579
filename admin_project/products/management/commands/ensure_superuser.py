from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from admin_project.settings.base import env


class Command(BaseCommand):
    help = ("Create the superuser named by DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD "
            "if it does not exist yet (idempotent).")

    def handle(self, *args, **options):
        username = env("DJANGO_SUPERUSER_USERNAME", default="")
        password = env("DJANGO_SUPERUSER_PASSWORD", default="")
        email = env("DJANGO_SUPERUSER_EMAIL", default="")
        if not username or not password:
            raise CommandError("set DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD")
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"superuser {username!r} already exists")
            return
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(f"created superuser {username!r}")
