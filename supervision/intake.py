"""The signal intake: the door between the feeds and the supervisor.

:class:`Intake` is the sink the feeds tell (:class:`infra.feeds.sink` describes the contract):
it refuses a signal the configuration rules out before any actor sees it (an unknown
account, a symbol outside the allow-list, an account at ``risk.max_open_positions``) and routes
everything else to the :class:`~supervision.supervisor.Supervisor`. Called on the feeds'
threads (and the control endpoint's); thread-safe. A refusal is counted, logged and handed to
the supervisor's signal listeners; a refusal that belongs in the signal history is also
committed to the store, and a store that fails then is logged, never raised.
"""

from __future__ import annotations

import logging
import threading
import time

from actors.messages import MarkPriceTick, Message, OpenSignal
from actors.model import Key
from actors.ports import Clock, Metrics, Store, SystemClock
from actors.state import Commit, SignalOutcome, SignalRecord
from infra.config import Config
from supervision.supervisor import Supervisor

__all__ = ["Intake"]

log = logging.getLogger(__name__)


class Intake:
    """The door for feeds: checks a signal against the configuration, then routes it.

    * account not configured, or symbol not in the account's allow-list: refused (counted,
      logged), the supervisor never sees it;
    * ``signal_policy.max_signal_age_s`` is the actor's to check (its policy refuses a stale
      signal ``too_old`` and records it), as is ``expires_at`` (``expired``);
    * ``risk.max_open_positions`` per account: refused with reason ``max_open_positions`` and
      recorded in the signal history. The count is an upper bound: symbols whose actor holds a
      non-terminal position, plus symbols admitted in the last few seconds whose actor has not
      reported yet.

    Every other message goes straight to the supervisor (``tell_tick`` for mark prices when the
    caller uses :meth:`tell_tick`). Thread-safe. :attr:`marks` keeps the last mark price of each
    symbol (the live view's unrealised PnL: an actor does not wake for every tick).
    """

    ADMITTED_MEMORY_S = 5.0

    def __init__(
        self,
        config: Config,
        supervisor: Supervisor,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        store: Store | None = None,
    ) -> None:
        self._config = config
        self._sup = supervisor
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._store = store
        self._allowed = {name: frozenset(a.symbols) for name, a in config.accounts.items()}
        self._admitted: dict[Key, float] = {}
        self._lock = threading.Lock()
        self.marks: dict[Key, float] = {}

    def tell(self, msg: Message) -> bool:
        if isinstance(msg, OpenSignal):
            return self._signal(msg)
        return self._sup.tell(msg)

    def admitted(self) -> int:
        """Symbols remembered as recently admitted (for ``max_open_positions``): pruned to
        the last ``ADMITTED_MEMORY_S`` seconds by every signal that checks the limit."""
        with self._lock:
            return len(self._admitted)

    def tell_tick(self, tick: MarkPriceTick) -> bool:
        self.marks[tick.key] = tick.price  # one store; read by the live view
        return self._sup.tell_tick(tick)

    def allowed(self, key: Key) -> bool:
        return key.symbol in self._allowed.get(key.account, frozenset())

    def _signal(self, sig: OpenSignal) -> bool:
        key = sig.key
        acc = self._config.accounts.get(key.account)
        if acc is None:
            return self._refuse(sig, "unknown_account", record=False)
        if key.symbol not in self._allowed[key.account]:
            return self._refuse(sig, "symbol_not_allowed", record=False)
        limit = acc.risk.max_open_positions
        if limit is not None:
            with self._lock:
                held = self._open_keys(key.account)
                if key not in held and len(held) >= limit:
                    return self._refuse(sig, "max_open_positions", record=True)
                self._admitted[key] = time.monotonic()
        return self._sup.tell(sig)

    def _open_keys(self, account: str) -> set[Key]:
        held = {
            c.key
            for c in self._sup.cells()
            if c.key.account == account
            and c.report.status is not None
            and not c.report.status.terminal
        }
        horizon = time.monotonic() - self.ADMITTED_MEMORY_S
        for k, t in list(self._admitted.items()):
            if t < horizon:
                del self._admitted[k]
            elif k.account == account:
                held.add(k)
        return held

    def _refuse(self, sig: OpenSignal, reason: str, record: bool) -> bool:
        if self._metrics is not None:
            self._metrics.signal(sig.source, SignalOutcome.REJECTED.value, reason)
        # Refusals are the product working (INFO); a signal for an account this process does
        # not have means the signal server and this configuration disagree (WARNING).
        log.log(
            logging.WARNING if reason == "unknown_account" else logging.INFO,
            "signal %s from %s refused: %s",
            sig.signal_id,
            sig.source,
            reason,
            extra={"key": str(sig.key)},
        )
        now = self._clock.now()
        rec = SignalRecord.refused(sig, reason, now)
        if record and self._store is not None:
            try:  # the signal history holds it; the journal holds changes only
                self._store.commit(Commit(sig.key, sig, None, 0, (), rec))
            except Exception as exc:
                log.error("could not record refused signal %s: %r", sig.signal_id, exc)
        self._sup.signal_decided(rec)
        return False
