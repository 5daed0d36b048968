"""The console's server-rendered pages: what each page shows, computed for one caller.

Owns: the page data (:mod:`.overview`, :mod:`.case`, :mod:`.devices`, :mod:`.grids`,
:mod:`.roster`, :mod:`.kpis`), the zh-CN/English words (:mod:`.text`, :mod:`.labels`) and the Jinja2
rendering (:mod:`.render`; templates in ``hub/web/console/page_*.html``). Each function asks
the access table through the caller's :class:`~hub.casework.access.Reach`; none decides access.

Must not import: ``hub.app``, ``hub.cli``, ``hub.web.api`` (only for types), ``simulators``,
``dashboards``.
"""
