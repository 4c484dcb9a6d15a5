"""Endpoints created before role assignments keep reading their connections: their system-assigned identity
gets Connection Secrets Reader where "Enforce access to connection secrets" was on, as creation does now."""

from django.db import migrations


def grant_connection_secrets_reader(apps, schema_editor):
    Endpoint = apps.get_model("endpoints", "Endpoint")
    RoleAssignment = apps.get_model("workspace", "RoleAssignment")
    for endpoint in Endpoint.objects.filter(identity_type="system_assigned", enforce_access_to_connection_secrets=True):
        RoleAssignment.objects.get_or_create(
            project_id=endpoint.project_id,
            principal_id=endpoint.principal_id,
            role="connection-secrets-reader",
            scope="project",
            defaults={"principal_type": "system_assigned", "principal_name": endpoint.name},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("endpoints", "0004_endpoint_project"),
        ("workspace", "0003_memberships"),
    ]

    operations = [migrations.RunPython(grant_connection_secrets_reader, migrations.RunPython.noop)]
