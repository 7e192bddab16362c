"""orderflow: event-driven order processing on Faust and Apache Kafka."""

__version__ = "0.1.0"
