"""Cairn's version, in a module of its own so the client, server and dashboard can name it
without importing the SDK (``cairn/__init__.py`` re-exports it as ``cairn.__version__``)."""

__version__ = "0.1.0"
