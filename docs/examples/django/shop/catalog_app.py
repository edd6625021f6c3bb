from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "shop.catalog_app"
    label = "catalog_app"

    def ready(self) -> None:
        from catalog import Catalog

        from shop import services

        services.catalog = Catalog()  # built in ready(), after warmstart's: captured
