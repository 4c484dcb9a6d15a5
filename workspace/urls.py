from django.urls import path

from workspace import views

app_name = "workspace"

urlpatterns = [
    path("connections/", views.connections, name="connections"),
    path("connections/new/", views.connection_create, name="connection_create"),
    path("connections/new/row/", views.connection_pair_row, name="connection_pair_row"),
    path("connections/<str:name>/edit/", views.connection_edit, name="connection_edit"),
    path("connections/<str:name>/delete/", views.connection_delete, name="connection_delete"),
    path("notifications/bell/", views.bell, name="bell"),
    path("notifications/read-all/", views.notifications_read_all, name="notifications_read_all"),
    path("notifications/<int:pk>/", views.notification_open, name="notification_open"),
]
