"""Object storage emulators for the storage tests (see emulators.py)."""

from emulators import azure_service, cloud_url, gcs_service, s3_service

__all__ = ["azure_service", "cloud_url", "gcs_service", "s3_service"]
