import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "only-for-the-example")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "shop.urls"
INSTALLED_APPS = [
    "warmstart.integrations.django",  # first: the apps after it are captured
    "shop.catalog_app.CatalogConfig",
]
MIDDLEWARE = []
DATABASES = {}
WARMSTART = {
    "namespace": "catalog",  # the store directory: $WARMSTART_DIR, or "directory": ...
    "interval": 30,
}
