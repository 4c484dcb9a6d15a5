from django.urls import path

from endpoints.views import internal as views

urlpatterns = [
    path("connection-provider/<str:token>/connections", views.connection_provider_list),
    path("connection-provider/<str:token>/connections/<str:name>", views.connection_provider_get),
]
