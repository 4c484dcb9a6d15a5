from django.urls import path

from flows import views

app_name = "flows"

urlpatterns = [
    path("", views.flow_list, name="list"),
    path("import/", views.flow_import, name="import"),
    path("runs/<uuid:run_id>/", views.test_run, name="test_run"),
    path("bulk-runs/", views.bulk_run_list, name="bulk_runs"),
    path("bulk-runs/<int:pk>/", views.bulk_run, name="bulk_run"),
    path("bulk-runs/<int:pk>/download/", views.bulk_run_download, name="bulk_run_download"),
    path("<str:name>/", views.flow_detail, name="detail"),
    path("<str:name>/bulk-runs/", views.bulk_run_list, name="flow_bulk_runs"),
    path("<str:name>/versions/<int:version>/", views.flow_detail, name="version"),
    path("<str:name>/versions/<int:version>/dag.svg", views.flow_dag, name="dag"),
    path("<str:name>/versions/<int:version>/test/", views.flow_test, name="test"),
    path("<str:name>/versions/<int:version>/bulk-runs/new/", views.bulk_run_new, name="bulk_run_new"),
    path("<str:name>/versions/<int:version>/bulk-runs/", views.bulk_run_create, name="bulk_run_create"),
]
