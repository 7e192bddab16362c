"""Debugging tools that read the topics without joining any consumer group.

``replay`` re-reads events (by time window or offsets), captures them to a file, folds them through
today's domain code, the gateway's answers as recorded (``--dry-run``), or re-publishes them to a
scratch topic; ``trace`` shows one order's whole history with a verdict; ``dlq`` lists, shows and
redrives dead letters.

Everything here reads with a plain ``AIOKafkaConsumer`` (``group_id=None``, ``read_committed``,
assign + seek, up to the end offsets captured at start) and never commits: the live ``orderflow``
group's offsets never move, so nothing here can make a worker skip or re-run an event.

Modules: ``window`` (time windows, pure), ``model`` (records and filters), ``reader``, ``capture``,
``dryrun`` (pure: today's code against the recorded history), ``publish``, ``verdict`` (pure),
``trace``, ``dlq``, ``output``, ``cli`` (the click commands, subcommands of ``orderflow.cli``).
"""
