"""Outgoing webhooks: the events a shop's other systems receive, signed, in order, retried.

`events.py` writes them (the outbox, in the caller's transaction), `targets.py` refuses
addresses a receiver must not have, `signing.py` signs them, `delivery.py` sends them (the
delivery actor in `queue/actors.py` and the scheduler's sweep call it).
"""
