# The event id names a change (type, product, version): a resync records it again, so not unique.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('outbox', '0002_set_aside'),
    ]

    operations = [
        migrations.AlterField(
            model_name='outboxevent',
            name='event_id',
            field=models.UUIDField(db_index=True),
        ),
    ]
