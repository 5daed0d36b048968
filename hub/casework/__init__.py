"""Alerts become cases: dispatch, escalation, actions by people, and who may take them.

Owns: :mod:`~hub.casework.service` (立案 → 派遣 and the closed loop against the store, the
roster and the outbox), :mod:`~hub.casework.access` (the one access table: role × action ×
scope), :mod:`~hub.casework.replies` (the worker reply topic, the signing rule, authenticating and
applying replies), :mod:`~hub.casework.reply_keys` (each person's reply key),
:mod:`~hub.casework.broker_access` (the broker's users and topic ACL from the roster) and
:mod:`~hub.casework.points` (case transitions as time-series points); care:
:mod:`~hub.casework.evaluations` (评价), :mod:`~hub.casework.elders` (the elder register),
:mod:`~hub.casework.visits` (探访 tasks), :mod:`~hub.casework.care_alerts` (the alerts and
notices of care), :mod:`~hub.casework.signs` (which devices and events are a daily sign of
life), :mod:`~hub.casework.care_plans` (the site's care plans) and
:mod:`~hub.casework.guardian_links` (a guardian's 评价 link on his channel). The pure workflow,
SLA, escalation and KPI rules are :mod:`hub.cases`.

Must not import: ``hub.ingest`` (the app connects the two by callbacks), ``hub.web``,
``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""
