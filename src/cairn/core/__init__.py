"""Pure building blocks: digests, names, records. No I/O beyond hashing bytes."""
