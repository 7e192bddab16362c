"""The sandbox payment gateway (a Stripe-like test server) and its token rules.

``gateway``: the aiohttp server over an aiosqlite ledger, with faults (``orderflow
sandbox-gateway``, or embedded in a worker with ``ORDERFLOW_GATEWAY=sandbox``); ``rules``: which
test token it approves or declines, and why.
"""
