"""One installation per account (I7): the alarm raised when another database's orders show
on an account this process owns (:class:`InstallationGuard`).

Built by the lease keeper (:class:`~supervision.leases.Ownership`), which hands it the
supervisor's entry and adoption switches. Threads: :meth:`InstallationGuard.inspect`,
:meth:`~InstallationGuard.alarm` and :meth:`~InstallationGuard.check` from any thread;
:meth:`~InstallationGuard.persist_and_refresh` on the keeper's thread (a database failure is
logged and retried next round).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from actors.messages import Message, OrderUpdate, SyncObservation
from actors.ports import StoreError
from actors.state import Installation
from infra.store.ownership import InstallationAlert, LeaseStore
from supervision.leases._model import FOREIGN

__all__ = ["InstallationGuard"]

log = logging.getLogger("supervision.leases")


class InstallationGuard:
    """One installation per account (I7): raises the alarm when an order with our prefix and
    another installation's id shows on an account this process owns (a sync's open orders,
    a user-stream order update), or when the database holds an unconfirmed alarm for it
    (an account already carrying another installation's orders).

    The alarm, at once: an ERROR log line, entries closed (``foreign_installation``, a
    refusal that may be retried), no adoption of positions found on the exchange for the
    account (another installation trades it), the ``installation:<account>`` readiness
    check and the ``ps_installation_alarm`` series. The keeper records it in
    ``installation_alerts``; it lasts, across restarts, until an operator confirms it
    (``position-supervisor confirm-installation``). Orders of another installation are never
    cancelled by this process (the orphan sweep leaves them alone).
    """

    def __init__(
        self,
        store: LeaseStore,
        installation: Installation,
        *,
        set_entries: Callable[[str, bool, str, bool], object],
        set_adoption: Callable[[str, bool], object] | None,
        reopen: Callable[[str], object],
    ) -> None:
        self._store = store
        self.installation = installation
        self._set_entries = set_entries
        self._set_adoption = set_adoption
        self._reopen = reopen
        self._alarms: dict[str, dict[int, tuple[str, str]]] = {}  # account -> inst -> (cid, sym)
        self._confirmed: dict[str, set[int]] = {}
        self._unsaved: list[tuple[str, int, str, str]] = []
        self._lock = threading.Lock()

    def alarm(self, account: str) -> str | None:
        """The installation id (six digits) of an unconfirmed alarm on ``account``."""
        alarms = self._alarms.get(account)
        if not alarms:
            return None
        return ", ".join(f"{i:06d}" for i in sorted(alarms))

    def check(self, account: str) -> str | None:
        """The readiness check ``installation:<account>``."""
        alarms = self._alarms.get(account)
        if not alarms:
            return None
        seen = "; ".join(
            f"installation {i:06d} ({cid} on {sym})" for i, (cid, sym) in sorted(alarms.items())
        )
        return (
            f"orders of another database on this account: {seen}; entries stopped until "
            f"`position-supervisor confirm-installation --account {account}`"
        )

    def inspect(self, msg: Message) -> None:
        """The supervisor's ``inspect`` hook (any thread; cheap; never raises)."""
        try:
            if isinstance(msg, OrderUpdate):
                self._seen(msg.key.account, msg.key.symbol, msg.client_id)
            elif isinstance(msg, SyncObservation):
                for o in msg.open_orders:
                    self._seen(msg.key.account, msg.key.symbol, o.client_id)
        except Exception:
            log.exception("installation check failed for %s", msg.key)

    def _seen(self, account: str, symbol: str, client_id: str) -> None:
        other = self.installation.foreign(client_id)
        if other is None or other in self._confirmed.get(account, ()):
            return
        with self._lock:
            alarms = self._alarms.setdefault(account, {})
            if other in alarms:
                return
            alarms[other] = (client_id, symbol)
            self._unsaved.append((account, other, client_id, symbol))
        log.error(
            "account %s: order %s on %s belongs to another installation (%06d; ours is %s): "
            "another database trades this account. Entries STOPPED for %s until an operator "
            "confirms (position-supervisor confirm-installation --account %s)",
            account,
            client_id,
            symbol,
            other,
            self.installation.label,
            account,
            account,
        )
        self._apply(account)

    def _apply(self, account: str) -> None:
        alarmed = bool(self._alarms.get(account))
        if self._set_adoption is not None:
            self._set_adoption(account, not alarmed)
        if alarmed:
            self._set_entries(account, False, FOREIGN, False)

    def persist_and_refresh(self, owned: Iterable[str]) -> None:
        """Keeper's thread: record new alarms, load the database's (an account already
        carrying another installation's orders, confirmations)."""
        with self._lock:
            unsaved, self._unsaved = self._unsaved, []
        store = self._store
        try:
            for account, other, cid, sym in unsaved:
                store.record_alert(account, other, cid, sym)
            alerts = store.alerts(list(owned))
        except StoreError as exc:
            with self._lock:
                self._unsaved = unsaved + self._unsaved
            log.info("installation alarms not refreshed: %s", exc)
            return
        self._refresh(alerts)

    def _refresh(self, alerts: list[InstallationAlert]) -> None:
        by_account: dict[str, list[InstallationAlert]] = {}
        for a in alerts:
            by_account.setdefault(a.account, []).append(a)
        for account, rows in by_account.items():
            confirmed = {a.installation for a in rows if a.confirmed_at is not None}
            self._confirmed[account] = confirmed
            new_alarm = False
            with self._lock:
                alarms = self._alarms.setdefault(account, {})
                for a in rows:
                    if a.confirmed_at is None and a.installation not in alarms:
                        alarms[a.installation] = (a.client_id, a.symbol)
                        new_alarm = True
                cleared = [i for i in alarms if i in confirmed]
                for i in cleared:
                    del alarms[i]
            if new_alarm:
                log.error(
                    "account %s carries orders of another installation (%s), not confirmed: "
                    "entries stay stopped",
                    account,
                    self.alarm(account),
                )
                self._apply(account)
            if cleared and not self._alarms.get(account):
                log.warning(
                    "account %s: installation alarm confirmed by an operator; entries resume",
                    account,
                )
                self._apply(account)
                self._reopen(account)
