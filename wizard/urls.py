from django.urls import path

from wizard import views

app_name = "wizard"

urlpatterns = [
    path("new/", views.start, name="start"),
    path("new/<uuid:draft_id>/basic/", views.step, {"step": "basic"}, name="step_basic"),
    path("new/<uuid:draft_id>/endpoint/", views.step, {"step": "endpoint"}, name="step_endpoint"),
    path("new/<uuid:draft_id>/deployment/", views.step, {"step": "deployment"}, name="step_deployment"),
    path("new/<uuid:draft_id>/outputs/", views.step, {"step": "outputs"}, name="step_outputs"),
    path("new/<uuid:draft_id>/review/", views.review, name="step_review"),
]
