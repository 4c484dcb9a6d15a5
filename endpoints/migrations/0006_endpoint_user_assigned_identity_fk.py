"""Endpoint.user_assigned_identity becomes a ManagedIdentity of the endpoint's project. Each name an endpoint gave
becomes an identity of that project (an Azure resource id gives its last segment; characters an identity name
cannot have become '-'), and, so that these endpoints keep starting as they did before identities held roles,
it gets the roles a user-assigned identity needs: Connection Secrets Reader, AcrPull and Storage Blob Data Reader
(as 0005 did for system-assigned identities). Going back turns the identities into names again."""

import re
import uuid

import django.db.models.deletion
from django.db import migrations, models

ROLES = (
    ("connection-secrets-reader", "project"),
    ("acr-pull", "registry"),
    ("storage-blob-data-reader", "storage"),
)


def identity_name(value: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", value.strip().rstrip("/").rpartition("/")[2]).strip("-_")
    if len(name) < 3:
        name = f"identity-{name}".rstrip("-")
    return name[:64]


def names_to_identities(apps, schema_editor):
    Endpoint = apps.get_model("endpoints", "Endpoint")
    ManagedIdentity = apps.get_model("workspace", "ManagedIdentity")
    RoleAssignment = apps.get_model("workspace", "RoleAssignment")
    for endpoint in Endpoint.objects.exclude(user_assigned_identity_name=""):
        name = identity_name(endpoint.user_assigned_identity_name)
        identity, _ = ManagedIdentity.objects.get_or_create(
            project_id=endpoint.project_id,
            name=name,
            defaults={"principal_id": uuid.uuid4(), "client_id": uuid.uuid4()},
        )
        endpoint.user_assigned_identity = identity
        endpoint.save(update_fields=["user_assigned_identity"])
        for role, scope in ROLES:
            RoleAssignment.objects.get_or_create(
                project_id=endpoint.project_id,
                principal_id=identity.principal_id,
                role=role,
                scope=scope,
                defaults={"principal_type": "user_assigned", "principal_name": identity.name},
            )


def identities_to_names(apps, schema_editor):
    Endpoint = apps.get_model("endpoints", "Endpoint")
    for endpoint in Endpoint.objects.exclude(user_assigned_identity=None).select_related("user_assigned_identity"):
        endpoint.user_assigned_identity_name = endpoint.user_assigned_identity.name
        endpoint.save(update_fields=["user_assigned_identity_name"])


class Migration(migrations.Migration):
    dependencies = [
        ("endpoints", "0005_grant_existing_identities"),
        ("workspace", "0003_memberships"),
    ]

    operations = [
        migrations.RenameField("endpoint", "user_assigned_identity", "user_assigned_identity_name"),
        migrations.AddField(
            model_name="endpoint",
            name="user_assigned_identity",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="endpoints",
                to="workspace.managedidentity",
            ),
        ),
        migrations.RunPython(names_to_identities, identities_to_names),
        migrations.RemoveField("endpoint", "user_assigned_identity_name"),
    ]
