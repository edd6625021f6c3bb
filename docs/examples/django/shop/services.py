"""The project's long-lived services, set in CatalogConfig.ready()."""

catalog = None
