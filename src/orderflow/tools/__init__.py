"""The project's tools and test rig, apart from the service: the worker never imports them.

``replay``: the replay / trace / dead-letter commands; ``sandbox``: the sandbox payment gateway
and its token rules; ``localkafka``: the local Apache Kafka launcher. One exception, lazy and
checked by import-linter (setup.cfg): a worker with ``ORDERFLOW_GATEWAY=sandbox`` embeds the
sandbox gateway.
"""
