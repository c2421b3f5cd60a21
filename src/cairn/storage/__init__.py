"""Byte storage behind one small interface (`Storage`); backends are chosen by URL."""

from cairn.storage.base import Storage, open_storage

__all__ = ["Storage", "open_storage"]
