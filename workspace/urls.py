from django.urls import path

from workspace import audit_views, signin_views, views

app_name = "workspace"

urlpatterns = [
    path("connections/", views.connections, name="connections"),
    path("connections/new/", views.connection_create, name="connection_create"),
    path("connections/new/row/", views.connection_pair_row, name="connection_pair_row"),
    path("connections/<str:name>/edit/", views.connection_edit, name="connection_edit"),
    path("connections/<str:name>/delete/", views.connection_delete, name="connection_delete"),
    path("projects/switch/", views.switch_project, name="switch_project"),
    path("notifications/bell/", views.bell, name="bell"),
    path("notifications/read-all/", views.notifications_read_all, name="notifications_read_all"),
    path("notifications/<int:pk>/", views.notification_open, name="notification_open"),
    path("accounts/entra/", signin_views.entra_start, name="entra_start"),
    path("accounts/entra/callback/", signin_views.entra_callback, name="entra_callback"),
    path("audit/", audit_views.audit_log, name="audit"),
]
