"""``make bench``: orderflow measured end to end, beside baselines run in the same sitting.

Run as ``python -m bench`` (see ``bench/__main__.py``); each scenario is a module of
``bench.scenarios`` with ``async def run(ctx: BenchContext) -> list[Figure]``.
"""
