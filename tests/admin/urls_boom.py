"""A URLconf with a view that fails, for the test of the DEBUG error page."""

from django.urls import path

from admin_project.urls import urlpatterns as project_urls


def boom(request):
    broker_url = "amqp://relay:very-secret-pw@rabbit:5672/%2F"  # a frame variable  # noqa: F841
    raise RuntimeError("failed talking to amqp://relay:very-secret-pw@rabbit:5672/")


urlpatterns = [path("boom/", boom), *project_urls]
