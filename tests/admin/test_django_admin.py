"""The Django admin site writes through the same services: same events as the API."""

import pytest
from django.contrib.auth import get_user_model

from admin_project.outbox.models import OutboxEvent
from admin_project.products.models import Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(client):
    su = get_user_model().objects.create_superuser("root", "root@example.invalid", "pw-12345678")
    client.force_login(su)
    return client


def test_add_change_delete_through_the_admin_site_record_events(admin_client_):
    form = {"title": "Lamp", "price": "20.00", "image": "", "description": "warm"}
    resp = admin_client_.post("/admin/products/product/add/", form)
    assert resp.status_code == 302, resp.content[:500]
    product = Product.objects.get()
    assert product.version == 1

    resp = admin_client_.post(f"/admin/products/product/{product.pk}/change/",
                              {**form, "title": "Desk lamp"})
    assert resp.status_code == 302
    product.refresh_from_db()
    assert (product.title, product.version) == ("Desk lamp", 2)

    resp = admin_client_.post(f"/admin/products/product/{product.pk}/delete/", {"post": "yes"})
    assert resp.status_code == 302
    assert not Product.objects.exists()
    assert list(OutboxEvent.objects.values_list("type", "version")) == [
        ("product.created", 1), ("product.updated", 2), ("product.deleted", 3)]


def test_bulk_delete_action_records_one_event_per_product(admin_client_):
    from admin_project.products import services

    ids = [services.product_create(title=f"p{i}", price="1.00").pk for i in range(3)]
    resp = admin_client_.post("/admin/products/product/", {
        "action": "delete_selected", "_selected_action": ids, "post": "yes"})
    assert resp.status_code == 302
    assert not Product.objects.exists()
    assert OutboxEvent.objects.filter(type="product.deleted").count() == 3


def test_admin_rejects_invalid_price(admin_client_):
    resp = admin_client_.post("/admin/products/product/add/",
                              {"title": "x", "price": "-5", "image": "", "description": ""})
    assert resp.status_code == 200  # form redisplayed with errors
    assert not Product.objects.exists() and not OutboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_outbox_permissions_survive_the_move_to_the_outbox_app():
    """A database from before the outbox app: its groups keep their outbox permissions."""
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("products", "0002_tombstones_resync"), ("outbox", None)])
    ContentType.objects.filter(model="outboxevent").delete()
    old = ContentType.objects.create(app_label="products", model="outboxevent")
    perm = Permission.objects.create(content_type=old, codename="view_outboxevent",
                                     name="Can view outbox event")
    group = Group.objects.create(name="outbox-readers")
    group.permissions.add(perm)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    (moved,) = Group.objects.get(name="outbox-readers").permissions.all()
    assert (moved.content_type.app_label, moved.codename) == ("outbox", "view_outboxevent")
    assert not ContentType.objects.filter(app_label="products", model="outboxevent").exists()


def test_the_outbox_admin_is_read_only_even_for_a_superuser(admin_client_):
    """No add, change or delete of outbox rows through the Django admin (a deleted pending row
    is an event never published), sent rows included, and no bulk delete action."""
    from django.utils import timezone

    from admin_project.products import services

    services.product_create(title="a", price="1.00")
    services.product_create(title="b", price="1.00")
    pending, sent = OutboxEvent.objects.order_by("id")
    OutboxEvent.objects.filter(pk=sent.pk).update(sent_at=timezone.now())
    before = list(OutboxEvent.objects.order_by("id").values())

    for row in (pending, sent):
        resp = admin_client_.post(f"/admin/outbox/outboxevent/{row.pk}/delete/", {"post": "yes"})
        assert resp.status_code == 403
        resp = admin_client_.get(f"/admin/outbox/outboxevent/{row.pk}/delete/")
        assert resp.status_code == 403
        # the change page is a read-only view: a POST changes nothing
        resp = admin_client_.post(f"/admin/outbox/outboxevent/{row.pk}/change/",
                                  {"type": "product.deleted", "version": "99", "sent_at": ""})
        assert resp.status_code == 403
    assert admin_client_.get("/admin/outbox/outboxevent/add/").status_code == 403
    resp = admin_client_.post("/admin/outbox/outboxevent/add/", {"type": "product.created"})
    assert resp.status_code == 403

    page = admin_client_.get("/admin/outbox/outboxevent/")
    assert page.status_code == 200
    actions = [value for value, _ in page.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in actions and "return_to_pending" in actions
    for selected in ([pending.pk, sent.pk], [sent.pk], [pending.pk]):
        resp = admin_client_.post("/admin/outbox/outboxevent/", {
            "action": "delete_selected", "_selected_action": selected, "post": "yes"})
        assert resp.status_code in (200, 302)  # "no action selected", or refused
    assert list(OutboxEvent.objects.order_by("id").values()) == before
    pending.refresh_from_db()
    assert pending.sent_at is None and pending.set_aside_at is None  # still to be published


def test_the_django_admin_never_shows_an_api_token_key(admin_client_for_tokens):
    client, key = admin_client_for_tokens
    page = client.get("/admin/authtoken/tokenproxy/").content.decode()
    assert key[:4] in page and key not in page
    user_id = client.session["_auth_user_id"]
    change = client.get(f"/admin/authtoken/tokenproxy/{user_id}/change/").content.decode()
    assert key not in change
    delete = client.get(f"/admin/authtoken/tokenproxy/{user_id}/delete/").content.decode()
    assert key not in delete


@pytest.fixture
def admin_client_for_tokens(db):
    from django.contrib.auth.models import User
    from django.test import Client
    from rest_framework.authtoken.models import Token

    su = User.objects.create_superuser("tokens-su", "t@example.invalid", "pw-tokens-1")
    key = Token.objects.create(user=su).key
    c = Client()
    c.force_login(su)
    return c, key
