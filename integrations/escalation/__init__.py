"""Critical findings to people: rules, rosters, channels, sender, service (package).

Pure: ``rules`` (finding → team, on-call roster → recipients per level, idempotency key),
``notification`` (what every message carries, texts, the webhook signature). I/O:
``channels`` (webhook, pager, e-mail, SMS-by-mail, HL7 alert via the outbox), ``sender``
(retries and fall-through between channels), ``engine`` (the escalation lifecycle in
PostgreSQL), ``web`` (the acknowledge pages and API).
"""
