"""Service layer: the operations both the embedded mode and the server run."""
