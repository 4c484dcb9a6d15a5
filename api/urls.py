from django.urls import path, re_path

from api import views
from api.http import unknown_route

app_name = "api"

urlpatterns = [
    path("openapi.json", views.openapi, name="openapi"),
    path("auth/token", views.token, name="token"),
    path("me", views.me, name="me"),
    path("projects", views.projects, name="projects"),
    path("connections", views.connections, name="connections"),
    path("connections/<str:name>", views.connection, name="connection"),
    path("flows", views.flows, name="flows"),
    path("flows/<str:name>", views.flow, name="flow"),
    path("flows/<str:name>/versions/<int:version>", views.flow_version, name="flow_version"),
    path("online-endpoints", views.online_endpoints, name="online_endpoints"),
    path("online-endpoints/<str:name>", views.online_endpoint, name="online_endpoint"),
    path("online-endpoints/<str:name>/list-keys", views.list_keys, name="list_keys"),
    path("online-endpoints/<str:name>/regenerate-keys", views.regenerate_keys, name="regenerate_keys"),
    path("online-endpoints/<str:name>/token", views.endpoint_token, name="endpoint_token"),
    path("online-endpoints/<str:name>/invoke", views.invoke, name="invoke"),
    path("online-endpoints/<str:endpoint>/deployments", views.online_deployments, name="online_deployments"),
    path("online-endpoints/<str:endpoint>/deployments/<str:name>", views.online_deployment, name="online_deployment"),
    path("online-endpoints/<str:endpoint>/deployments/<str:name>/logs", views.deployment_logs, name="deployment_logs"),
    path(
        "online-endpoints/<str:endpoint>/deployments/<str:name>/export",
        views.deployment_export,
        name="deployment_export",
    ),
    # Anything else under /api/v1/ answers a JSON 404, not the studio's HTML page.
    re_path(r"^(?P<rest>.*)$", unknown_route, name="unknown"),
]
