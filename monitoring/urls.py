"""Data assets (each deployment's collected inference data) and the instances' OTLP span ingest."""

from django.urls import path

from monitoring import ingest_views, views

app_name = "monitoring"

urlpatterns = [
    path("data-assets/", views.asset_list, name="assets"),
    path("data-assets/<str:endpoint>/<str:deployment>/", views.asset_detail, name="asset"),
    path("data-assets/<str:endpoint>/<str:deployment>/policy/", views.policy, name="policy"),
    path("data-assets/<str:endpoint>/<str:deployment>/download/", views.download, name="download"),
    path("data-assets/<str:endpoint>/<str:deployment>/files/<path:relative>", views.download_file, name="file"),
    path("internal/otlp/v1/traces", ingest_views.otlp_traces, name="otlp_traces"),
]
