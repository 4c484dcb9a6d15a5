from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from workspace import signin_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="flows:list", permanent=False)),
    # The sign-in page, which offers "Sign in with Microsoft" when Entra ID is configured.
    path("accounts/login/", signin_views.sign_in, name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("flows/", include("flows.urls")),
    path("deployments/", include("wizard.urls")),
    path("", include("endpoints.urls")),
    path("internal/", include("endpoints.urls_internal")),
    path("", include("workspace.urls")),
    path("", include("monitoring.urls")),
]

admin.site.site_header = "Flowdeploy admin"
admin.site.site_title = "Flowdeploy admin"
