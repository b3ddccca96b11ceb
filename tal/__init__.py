"""The science of temporal action localization, framework-free (no ray, prefect or mlflow)."""
