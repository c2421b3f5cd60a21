"""Cairn's HTTP server: a thin layer over the same service code the embedded mode uses.

`cairn.server.app` builds the FastAPI application; `cairn.wire` is the wire format it shares
with the client (importing this package does not import the web framework).
"""
