"""The sandbox gateway and the HTTP client, against each other on 127.0.0.1 (no Kafka)."""
