"""changed_at: when the change happened in the admin (the event's data.updated_at), next to
occurred_at (when the event that brought it was sent: a resync's or a repair's time for a
change sent again). Existing rows get it from the data they recorded."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0002_change_deliveries'),
    ]

    operations = [
        migrations.AddField(
            model_name='productchange',
            name='changed_at',
            field=models.DateTimeField(null=True),
        ),
        migrations.RunSQL(
            "UPDATE audit_productchange"
            " SET changed_at = COALESCE((data->>'updated_at')::timestamptz, occurred_at)",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name='productchange',
            name='changed_at',
            field=models.DateTimeField(),
        ),
    ]
