# Events the relay can never send are set aside (not pending); each row records its size.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('outbox', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='outboxevent',
            name='set_aside_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='set_aside_reason',
            field=models.TextField(blank=True, db_default='', default=''),
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='size',
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        # The relay bounds a claim by these sizes: fill them in for what is still pending.
        migrations.RunSQL(
            "UPDATE products_outboxevent SET size = octet_length(payload::text)"
            " WHERE sent_at IS NULL",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.RemoveIndex(
            model_name='outboxevent',
            name='outbox_pending_idx',
        ),
        migrations.AddIndex(
            model_name='outboxevent',
            index=models.Index(condition=models.Q(('sent_at__isnull', True), ('set_aside_at__isnull', True)), fields=['id'], name='outbox_pending_idx'),
        ),
        migrations.AddIndex(
            model_name='outboxevent',
            index=models.Index(condition=models.Q(('set_aside_at__isnull', False)), fields=['id'], name='outbox_set_aside_idx'),
        ),
    ]
