"""The HTTP routes, one module per area, each registered by one ``add_*_routes(api, web)`` call.

Owns: the route closures of the API and the console (:mod:`.health`, :mod:`.alerts`,
:mod:`.devices`, :mod:`.community`, :mod:`.cases`, :mod:`.kpis`, :mod:`.stream`,
:mod:`.pages`, :mod:`.errors`) and what they share (:mod:`.common`: the caller, paging, the
error shape). The list of registrations is :data:`hub.web.api.ROUTES`: a new area adds its
module and one line there.

Must not import: ``hub.app``, ``hub.cli``, ``simulators``, ``dashboards``.
"""
