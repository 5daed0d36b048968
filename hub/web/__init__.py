"""What people see and do over HTTP: the API, JSON views, the event stream, console and phone page.

Owns: :mod:`~hub.web.api` (authentication and the route set-up, :data:`~hub.web.api.ROUTES`),
:mod:`~hub.web.routes` (one module of routes per area, each asking the access table),
:mod:`~hub.web.views` (devices, events and the community as JSON),
:mod:`~hub.web.stream` (in-process fan-out to server-sent-event clients),
:mod:`~hub.web.pages` (the console pages' data, words and rendering) and the ``console/``
files (templates, script, styles).

Must not import: ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""
