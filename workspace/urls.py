from django.urls import path

from workspace import access_views, audit_views, azure_views, signin_views, views

app_name = "workspace"

urlpatterns = [
    path("connections/", views.connections, name="connections"),
    path("connections/new/", views.connection_create, name="connection_create"),
    path("connections/new/row/", views.connection_pair_row, name="connection_pair_row"),
    path("connections/<str:name>/edit/", views.connection_edit, name="connection_edit"),
    path("connections/<str:name>/delete/", views.connection_delete, name="connection_delete"),
    path("projects/switch/", views.switch_project, name="switch_project"),
    path("projects/<str:project>/access/", access_views.access_page, name="access"),
    path("projects/<str:project>/access/add/", access_views.role_assignment_add, name="role_assignment_add"),
    path(
        "projects/<str:project>/access/<int:pk>/remove/",
        access_views.role_assignment_remove,
        name="role_assignment_remove",
    ),
    path("projects/<str:project>/access/members/add/", access_views.member_add, name="member_add"),
    path("projects/<str:project>/access/members/<int:pk>/role/", access_views.member_role, name="member_role"),
    path("projects/<str:project>/access/members/<int:pk>/remove/", access_views.member_remove, name="member_remove"),
    path("projects/<str:project>/identities/", access_views.identities_page, name="identities"),
    path("projects/<str:project>/identities/<str:name>/delete/", access_views.identity_delete, name="identity_delete"),
    path("projects/<str:project>/identities/<str:name>/azure/", access_views.identity_azure, name="identity_azure"),
    path("projects/<str:project>/azure/", azure_views.azure_page, name="azure"),
    path("projects/<str:project>/azure/test/", azure_views.azure_test, name="azure_test"),
    path("projects/<str:project>/azure/disconnect/", azure_views.azure_disconnect, name="azure_disconnect"),
    path("notifications/bell/", views.bell, name="bell"),
    path("notifications/read-all/", views.notifications_read_all, name="notifications_read_all"),
    path("notifications/<int:pk>/", views.notification_open, name="notification_open"),
    path("accounts/entra/", signin_views.entra_start, name="entra_start"),
    path("accounts/entra/callback/", signin_views.entra_callback, name="entra_callback"),
    path("audit/", audit_views.audit_log, name="audit"),
]
