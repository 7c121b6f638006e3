"""The live view: one read-only HTML page rendered on the server, reloading itself.

:func:`build_view` gathers what the page shows from the running process (the actors'
published reports, the store's latest journal events, signals and stored controls, the
health checks) into a :class:`LiveView`; :func:`render_page` turns it into HTML and
:func:`view_json` into the JSON of ``GET /api/view``. Both are pure.

The page has no script: a ``<meta http-equiv="refresh">`` reloads it every ``refresh_s``
seconds. Every text that comes from outside (symbols, sources, signal ids, reasons, notes,
journal details) is escaped (:func:`html.escape`), so a hostile name cannot inject markup; the
control server also sends a Content-Security-Policy that allows no script at all.

Called on the control server's worker threads. :func:`build_view` reads the store within
its bound and never raises for a store failure: the part it could not read says why.

The package: the view and its JSON (``_view``), the page (``_page``).
"""

from supervision.live_view._page import render_page
from supervision.live_view._view import (
    ControlRow,
    JournalRow,
    LiveView,
    PositionRow,
    ViewSource,
    build_view,
    view_json,
)

__all__ = [
    "ControlRow",
    "JournalRow",
    "LiveView",
    "PositionRow",
    "ViewSource",
    "build_view",
    "render_page",
    "view_json",
]
