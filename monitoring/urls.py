"""Data assets: each deployment's collected inference data."""

from django.urls import path

from monitoring import views

app_name = "monitoring"

urlpatterns = [
    path("data-assets/", views.asset_list, name="assets"),
    path("data-assets/<str:endpoint>/<str:deployment>/", views.asset_detail, name="asset"),
    path("data-assets/<str:endpoint>/<str:deployment>/policy/", views.policy, name="policy"),
    path("data-assets/<str:endpoint>/<str:deployment>/download/", views.download, name="download"),
    path("data-assets/<str:endpoint>/<str:deployment>/files/<path:relative>", views.download_file, name="file"),
]
