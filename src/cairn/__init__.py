"""Cairn: version the data ML work reads and writes."""
