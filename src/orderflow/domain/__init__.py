"""Pure domain logic: no Faust, aiohttp or Kafka imports (an import-linter contract checks it).

What states can an order be in: ``order.py``. What is a valid order request: ``validation.py``.
How a payment is decided and what a decline means: ``payment.py``. What events exist: ``events.py``.
"""
