"""The deployment pages: the list, a deployment's tabs (Details, Test, Consume, Logs) and their actions."""

from django.urls import path

from endpoints.views import consume, deployments, endpoint_page, export, logs, monitoring_tab, testing

app_name = "endpoints"

urlpatterns = [
    path("deployments/", deployments.deployment_list, name="list"),
    path("deployments/<str:endpoint>/<str:name>/", deployments.details, name="detail"),
    path("deployments/<str:endpoint>/<str:name>/scale/", deployments.scale, name="scale"),
    path("deployments/<str:endpoint>/<str:name>/delete/", deployments.delete_deployment, name="delete_deployment"),
    path("deployments/<str:endpoint>/<str:name>/test/", testing.test, name="test"),
    path("deployments/<str:endpoint>/<str:name>/test/chat/", testing.chat, name="chat"),
    path("deployments/<str:endpoint>/<str:name>/consume/", consume.consume, name="consume"),
    path("deployments/<str:endpoint>/<str:name>/monitoring/", monitoring_tab.monitoring, name="monitoring"),
    path(
        "deployments/<str:endpoint>/<str:name>/monitoring/traces/", monitoring_tab.request_trace, name="request_trace"
    ),
    path("deployments/<str:endpoint>/<str:name>/monitoring/traces/<str:trace_id>/", monitoring_tab.trace, name="trace"),
    path("deployments/<str:endpoint>/<str:name>/logs/", logs.logs, name="logs"),
    path("deployments/<str:endpoint>/<str:name>/export/", export.export, name="export"),
    path("endpoints/<str:endpoint>/", endpoint_page.endpoint_page, name="endpoint"),
    path("endpoints/<str:endpoint>/traffic/", deployments.traffic, name="traffic"),
    path("endpoints/<str:endpoint>/delete/", deployments.delete_endpoint, name="delete_endpoint"),
    path("endpoints/<str:endpoint>/azure-roles/grant/", endpoint_page.grant_azure_roles, name="grant_azure_roles"),
    path("endpoints/<str:endpoint>/keys/<str:which>/", consume.key, name="key"),
    path("endpoints/<str:endpoint>/keys/<str:which>/regenerate/", consume.regenerate_key, name="regenerate_key"),
    path("endpoints/<str:endpoint>/token/", consume.token, name="token"),
]
