# OutboxEvent now belongs to the outbox app (admin_project/outbox); its table is kept.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('products', '0002_tombstones_resync'),
        ('outbox', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name='OutboxEvent')],
        ),
    ]
