"""The operator's control endpoint and live view, served by the running process.

HTTP on ``[control] address`` (loopback by default), started only while the token variable
(``PS_CONTROL_TOKEN``, ``control.token_env``) is set. JSON in and out:

* ``POST /control/close``         ``{"symbols": [...], "account": null, "reason": "...",
  "all": false, "timeout_s": 10}``: close each symbol's open position at market (``all``:
  every open position of the account(s): flatten);
* ``POST /control/pause``         new entries refused ``paused`` on the symbols (none given:
  every symbol of the account(s)); protection, trailing stops and closes go on;
* ``POST /control/resume``        entries taken again (none given: every symbol);
* ``POST /control/unquarantine``  lift the quarantine of the symbols (``all``: of every
  quarantined one);
* ``GET /api/view``               the live view as JSON;
* ``GET /``                       the live view (HTML, reloading itself; no script).

Every request carries ``Authorization: Bearer <token>`` (compared in constant time); the
page also takes HTTP Basic with the token as password (what a browser can send). On a
loopback address the page is served without a token to a client that names a loopback host
(``Host: 127.0.0.1:…``, ``localhost``; a DNS-rebinding page names another); anywhere else it
needs the token like the rest. A refused request is answered ``401`` with a JSON reason,
logged at WARNING (address, method, path and why; never the token; at most one line per
reason per 10 s) and counted in ``ps_control_requests_total{command,result="unauthorized"}``.

Each command becomes one message per symbol to its actor (:class:`~actors.messages.
CloseRequest`, :class:`~actors.messages.PauseRequest`, :class:`~actors.messages.
UnquarantineRequest`) with ``by="operator"`` and the reason given, which the actor journals.
The request waits (up to ``timeout_s``, at most 60 s) for each actor's decision (its
:class:`~actors.state.ControlOutcome`, through ``Supervisor.control_listeners``) and, for a
close, for the position to be closed; the answer lists each symbol's outcome and says what
is still pending when the time is up (``"done": false``). The waits run on the server's
worker threads (4): a stop of the server ends them at once.

Threads: the server's (see :mod:`infra.http_server`); the outcome listener runs on actor
threads and only sets events.

The package: the server (``_server``), who may call it (``_auth``), a command's body
(``_request``), its answers in words (``_words``), its metrics (``_metrics``).
"""

from supervision.control._auth import authorize
from supervision.control._metrics import ControlCollector, ControlStats
from supervision.control._request import COMMANDS, BadRequest, CommandRequest, parse_command
from supervision.control._server import ControlServer

__all__ = [
    "COMMANDS",
    "BadRequest",
    "CommandRequest",
    "ControlCollector",
    "ControlServer",
    "ControlStats",
    "authorize",
    "parse_command",
]
