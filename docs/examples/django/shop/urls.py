import os

from django.http import JsonResponse
from django.urls import path

from shop import services
from warmstart.integrations.django import health


def item(request, key):
    row, hit = services.catalog.lookup(key)
    return JsonResponse({"key": row.key, "value": row.value, "hit": hit, "pid": os.getpid()})


urlpatterns = [path("health", health), path("item/<str:key>", item)]
