# OutboxEvent now belongs to the outbox app (admin_project/outbox); its table is kept. Its
# content type moves with it, so permissions granted on it (view, delete) stay granted.

from django.db import migrations


def content_type_move(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="outbox", model="outboxevent").exists():
        ContentType.objects.filter(app_label="products", model="outboxevent").update(
            app_label="outbox")


def content_type_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="products", model="outboxevent").exists():
        ContentType.objects.filter(app_label="outbox", model="outboxevent").update(
            app_label="products")


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('products', '0002_tombstones_resync'),
        ('outbox', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name='OutboxEvent')],
        ),
        migrations.RunPython(content_type_move, content_type_back),
    ]
