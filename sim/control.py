"""Control API under ``/_sim/`` (JSON in, JSON out) for a sim running in another process.

Every route maps to a ``SimExchange`` method; see sim/README.md for the list. Errors:
400 ``{"error": ...}`` for a bad request, 404 for an unknown route. Runs on HTTP threads.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from sim.errors import BinanceError
from sim.faults import KINDS, Fault
from sim.httpserver import Request, Response

if TYPE_CHECKING:
    from sim.exchange import SimExchange


class ControlApi:
    """Routes ``/_sim/*`` requests to the exchange."""

    def __init__(self, ex: SimExchange) -> None:
        self.ex = ex

    def handle(self, req: Request) -> Response:
        """Answer one control request."""
        try:
            body = req.json() if req.method in ("POST", "PUT") else {}
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            return Response.of_json(self._route(req, body))
        except LookupError as exc:
            return Response.of_json({"error": str(exc)}, 404)
        except (ValueError, TypeError, BinanceError) as exc:
            return Response.of_json({"error": str(exc)}, 400)

    def _route(self, req: Request, body: dict[str, Any]) -> Any:
        ex = self.ex
        route = (req.method, req.path.rstrip("/"))
        account = req.query.get("account") or "default"  # the account of the state routes
        if route == ("GET", "/_sim/health"):
            return {"ok": True, "base_url": ex.base_url, "ws_url": ex.ws_url}
        if route == ("GET", "/_sim/prices"):
            return ex.mark_prices()
        if route == ("POST", "/_sim/price"):
            if "prices" in body:
                ex.set_prices({str(k): float(v) for k, v in dict(body["prices"]).items()})
            else:
                ex.set_price(str(body["symbol"]), float(body["price"]))
            return {"ok": True}
        if route == ("POST", "/_sim/walk"):
            ex.start_random_walk(
                float(body.get("interval_s", 0.2)), float(body.get("step_pct", 0.001))
            )
            return {"ok": True, "running": True}
        if route == ("DELETE", "/_sim/walk"):
            ex.stop_random_walk()
            return {"ok": True, "running": False}
        if route == ("GET", "/_sim/orders"):
            since = int(req.query.get("since", "0"))
            only = req.query.get("account") or None
            return [asdict(e) for e in ex.order_log(only) if e.seq > since]
        if route == ("GET", "/_sim/cancels"):
            since = int(req.query.get("since", "0"))
            only = req.query.get("account") or None
            return [asdict(e) for e in ex.cancel_log(only) if e.seq > since]
        if route == ("GET", "/_sim/accounts"):
            return list(ex.accounts)
        if route == ("GET", "/_sim/positions"):
            return {s: asdict(p) for s, p in ex.positions(account).items()}
        if route == ("GET", "/_sim/open_orders"):
            return [asdict(o) for o in ex.open_orders(account)]
        if route == ("GET", "/_sim/user_events"):
            return ex.user_events()
        if route == ("GET", "/_sim/streams"):
            return ex.hub.snapshot()
        if route == ("GET", "/_sim/faults"):
            return {"armed": [f.to_json() for f in ex.list_faults()], "kinds": KINDS}
        if route == ("POST", "/_sim/faults"):
            return {"id": ex.faults.add(Fault.from_json(body))}
        if route == ("DELETE", "/_sim/faults"):
            return {"removed": ex.clear_faults(req.query.get("kind") or None)}
        if route == ("POST", "/_sim/drop_streams"):
            return {"dropped": ex.drop_streams(str(body.get("kind", "all")))}
        if route == ("POST", "/_sim/config"):
            if "user_events_first" in body:
                ex.user_events_first = bool(body["user_events_first"])
            if "enforce_rate_limits" in body:
                ex.limits.enforce = bool(body["enforce_rate_limits"])
            return {
                "user_events_first": ex.user_events_first,
                "enforce_rate_limits": ex.limits.enforce,
            }
        if route == ("GET", "/_sim/limits"):
            return ex.limits.snapshot()
        if route == ("GET", "/_sim/stops"):
            wanted = req.query.get("symbols")
            return ex.stops_view(wanted.split(",") if wanted else None)
        if route == ("POST", "/_sim/seed"):
            return ex.seed(list(body.get("orders") or []), list(body.get("stops") or []))
        if route == ("POST", "/_sim/cancel_stops"):
            return {"cancelled": ex.cancel_stops([str(x) for x in body.get("symbols") or []])}
        if route == ("DELETE", "/_sim/blast"):
            ex.stop_blast()
            return {"ok": True}
        if route == ("POST", "/_sim/reset"):
            ex.reset()
            return {"ok": True}
        if route == ("POST", "/_sim/blast"):
            return ex.blast_mark_prices(
                int(body["n_frames"]),
                list(body["symbols"]) if body.get("symbols") else None,
                float(body["rate_per_s"]) if body.get("rate_per_s") else None,
                step_pct=float(body.get("step_pct", 0.0005)),
                drift_pct=float(body.get("drift_pct", 0.0)),
            )
        raise LookupError(f"no control route {req.method} {req.path}")
