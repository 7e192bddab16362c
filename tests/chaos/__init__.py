"""The chaos harness: orders under faults, audited from the outside (`make chaos`).

    python -m tests.chaos --orders 2000 --rate 10 --workers 3 --brokers 3 --faults full --seed 12
    make chaos CHAOS_ARGS='--orders 10000 --workers 3 --brokers 3 --faults full'

It starts its own broker(s) (``--base-port``, default 29092), the sandbox gateway, and N workers
(``rig.py``), posts orders open loop at ``--rate`` to random workers with a careful client
(``load.py``), plays the seeded fault schedule on two lanes, processes and gateway
(``schedule.py``, ``runner.py``), waits for every accepted order to be terminal, then audits
topics, ledger and API (``audit.py``). It prints a table, writes ``result.json`` (figures, failed
checks with example orders told from every source, each fault as it happened) and exits 1 when
anything is lost, charged twice, paid without its charge or inconsistent.

Module map: ``schedule`` (presets, ``KIND@SECONDS[+DURATION]``), ``rig`` (processes and the
faults on them), ``load`` (intents and the client), ``audit`` (evidence and checks), ``runner``
(one run), ``__main__`` (the CLI).
"""
