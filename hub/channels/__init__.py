"""Notification channels: message texts, request formats and signing, delivery outcome.

Owns, pure: the Zh-CN-first (English available) message texts for case notifications
(:mod:`hub.channels.messages`), the request bodies and signatures for a generic JSON webhook,
the DingTalk custom robot and the WeCom group robot (:mod:`hub.channels.formats`), per-person
channel preferences (:mod:`hub.channels.preferences`); and one small async sender that POSTs
a prepared request and classifies the outcome (:mod:`hub.channels.webhook`). Retry policy
stays in the hub's dispatcher (:mod:`hub.notify.dispatch`).

Must not import: ``hub.ingest``, ``hub.web``, ``hub.app``, ``hub.storage``, ``hub.notify``,
``simulators``, ``dashboards``. It may import :mod:`hub.cases` (to render a case).
"""
