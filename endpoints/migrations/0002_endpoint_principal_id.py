import uuid

from django.db import migrations, models


def give_each_endpoint_a_principal(apps, schema_editor):
    Endpoint = apps.get_model("endpoints", "Endpoint")
    for endpoint in Endpoint.objects.filter(principal_id=None):
        endpoint.principal_id = uuid.uuid4()
        endpoint.save(update_fields=["principal_id"])


class Migration(migrations.Migration):
    dependencies = [("endpoints", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="endpoint",
            name="principal_id",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(give_each_endpoint_a_principal, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="endpoint",
            name="principal_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
