"""The bench's scenarios: one module each, ``async def run(ctx) -> list[Figure]``."""
