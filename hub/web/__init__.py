"""What people see and do over HTTP: the API, JSON views, the event stream, console and phone page.

Owns: :mod:`~hub.web.api` (routes, authentication, and asking the access table),
:mod:`~hub.web.views` (devices, events and the community as JSON),
:mod:`~hub.web.stream` (in-process fan-out to server-sent-event clients) and the static
``console/`` files.

Must not import: ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""
