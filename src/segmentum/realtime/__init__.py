"""Real-time segments: tracked events, per-customer rule re-evaluation, enter / exit webhooks.

The pieces: :mod:`.store` (the SQLite file every part shares, usable while a pipeline job holds
the warehouse), :mod:`.events` (checking what a client sends), :mod:`.evaluate` (which rules
can run live, and running them for one customer), :mod:`.engine` (record + evaluate in one
transaction), :mod:`.deliver` (the webhook outbox worker), :mod:`.sync` (what the warehouse
hands the real-time side: definitions, subscriptions, recent orders) and :mod:`.drain` (tracked
events into the warehouse's ``events`` table, exactly once).
"""
