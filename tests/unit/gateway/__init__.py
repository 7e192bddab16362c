"""Unit tests of the gateway client's pure parts: backoff, circuit breaker, fault settings."""
