import os

from django.core.wsgi import get_wsgi_application

from common.wsgi import guarded

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "admin_project.settings.local")
application = guarded(get_wsgi_application())
