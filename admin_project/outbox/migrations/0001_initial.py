# The OutboxEvent model moved here from the products app: the table stays as it is
# (products_outboxevent); only Django's state changes hands (products 0003 lets it go).

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('products', '0002_tombstones_resync'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='OutboxEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event_id', models.UUIDField(unique=True)),
                        ('type', models.CharField(max_length=32)),
                        ('product_id', models.BigIntegerField(db_index=True)),
                        ('version', models.PositiveIntegerField()),
                        ('payload', models.JSONField(help_text='The full event envelope, as sent on the wire.')),
                        ('occurred_at', models.DateTimeField()),
                        ('sent_at', models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        'db_table': 'products_outboxevent',
                        'ordering': ['id'],
                        'indexes': [models.Index(condition=models.Q(('sent_at__isnull', True)), fields=['id'], name='outbox_pending_idx'), models.Index(condition=models.Q(('sent_at__isnull', False)), fields=['sent_at'], name='outbox_sent_at_idx')],
                    },
                ),
            ],
        ),
    ]
