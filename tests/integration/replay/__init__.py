"""Replay, trace and dead-letter commands against the real broker."""
