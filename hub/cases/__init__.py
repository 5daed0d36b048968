"""The case workflow (案件闭环): alerts become cases worked by grid workers.

Owns, all pure (no I/O, no clock reads — ``now`` is always a parameter):

* :mod:`hub.cases.model` — states, actions, the :class:`~hub.cases.model.Case` and its
  append-only :class:`~hub.cases.model.TimelineEntry`;
* :mod:`hub.cases.workflow` — the transition table and :func:`~hub.cases.workflow.apply`;
* :mod:`hub.cases.calendar` — working-day calendar (holidays, 调休 make-up days, working hours);
* :mod:`hub.cases.sla` — time limits per category × severity, traffic lights, 督办 events;
* :mod:`hub.cases.escalation` — escalation chains and the idempotent escalation planner;
* :mod:`hub.cases.kpi` — 结案率, 按期结案率, 返工率, 延期率 and response times from timelines;
* :mod:`hub.cases.care` — care plans, visit tasks, outcomes, lights, escalation, 探访完成率
  (``care.yaml``: shipped defaults);
* ``policies.yaml`` — shipped defaults (every number is a default a community may change).

The workflow follows the digital urban management closed loop of GB/T 30428 and the case
filing/closing rules of CJ/T 315 (立案 → 派遣 → 处置 → 反馈 → 核查 → 结案).

* :mod:`hub.cases.views` — the JSON shape of a case (allowed actions, traffic lights).

Must not import: any stage (``hub.ingest``, ``hub.casework``, ``hub.notify``, ``hub.web``,
``hub.storage``), ``hub.app``, ``hub.channels``, ``simulators``, ``dashboards``. The store persists what these functions
return; the hub wires them.
"""
