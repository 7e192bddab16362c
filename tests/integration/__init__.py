"""Integration tests: real servers (and, for the Kafka ones, the real broker)."""
