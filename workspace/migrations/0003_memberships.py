"""Everyone who used the studio before projects keeps what they could do, in the default project."""

from django.db import migrations

CONTRIBUTOR_PERMISSIONS = ("add_deployment", "change_deployment", "add_flow", "add_endpoint")


def members_of_default_project(apps, schema_editor):
    Project = apps.get_model("workspace", "Project")
    Membership = apps.get_model("workspace", "Membership")
    User = apps.get_model("auth", "User")
    project, _ = Project.objects.get_or_create(name="default")
    for user in User.objects.all():
        if user.is_superuser or user.is_staff:
            role = "owner"
        elif (
            user.user_permissions.filter(codename__in=CONTRIBUTOR_PERMISSIONS).exists()
            or user.groups.filter(permissions__codename__in=CONTRIBUTOR_PERMISSIONS).exists()
        ):
            role = "contributor"
        else:
            role = "reader"
        Membership.objects.get_or_create(project=project, user=user, defaults={"role": role})


class Migration(migrations.Migration):
    dependencies = [
        ("workspace", "0002_projects"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(members_of_default_project, migrations.RunPython.noop)]
