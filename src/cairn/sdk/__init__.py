"""The Python SDK: runs, artifacts and the read API."""
