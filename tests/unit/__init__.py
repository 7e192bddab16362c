"""Unit tests: pure domain, records and schemas; no event loop, no broker."""
