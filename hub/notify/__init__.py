"""Who is told and what they get: routing, the notification bodies, delivery from the outbox.

Owns: :mod:`~hub.notify.routing` (a subject's grid → the people on duty; the topic scheme
of notifications), :mod:`~hub.notify.payloads` (the one producer of
``linli.notification.v1``), :mod:`~hub.notify.dispatch` (delivers pending outbox rows, with
retries and backoff) and :mod:`~hub.notify.webhooks` (DingTalk, WeCom, signed webhooks).

Must not import: ``hub.ingest``, ``hub.casework``, ``hub.web``, ``hub.app``, ``hub.cli``,
``simulators``, ``dashboards``.
"""
