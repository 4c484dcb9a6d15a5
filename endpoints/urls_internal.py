from django.urls import path

from endpoints.views import internal as views

# The token is in the Authorization header (endpoints/connections.py), never in these paths, which logs write.
urlpatterns = [
    path("connection-provider/connections", views.connection_provider_list),
    path("connection-provider/connections/<str:name>", views.connection_provider_get),
]
