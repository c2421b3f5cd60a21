"""Content-addressed objects: blobs, chunk lists and trees, on top of a `Storage`."""
