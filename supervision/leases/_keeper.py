"""The lease keeper (:class:`Ownership`): the process's side of one owner per account (I7);
see :mod:`supervision.leases` for the rule, the rounds and the gate.

Longer than 400 lines for a reason: the keeper is one state machine per account (standby,
taking over, owner, fenced) driven by one thread, whose transitions (renew, take, lose,
open) read and write the same token table under the same lock; split, the lock would have to
be shared across modules. Its vocabulary, the installation check, the partition upkeep and
the metrics are in their own modules.

Threads: the keeper's own thread (``lease-keeper``); :meth:`Ownership.token`,
:meth:`~Ownership.fence`, :meth:`~Ownership.check`, :meth:`~Ownership.synced` and
:meth:`~Ownership.view` from any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client.registry import Collector

from actors.ports import StoreError
from actors.state import Installation
from infra.store.ownership import Grant, LeaseInfo, LeaseStore
from supervision.leases._installation import InstallationGuard
from supervision.leases._metrics import OwnershipCollector
from supervision.leases._model import (
    LOST,
    NOT_OWNER,
    AccountView,
    LeaseSettings,
    Role,
    readiness_problems,
)
from supervision.leases._partitions import PartitionUpkeep

__all__ = ["Ownership"]

log = logging.getLogger("supervision.leases")


@dataclass
class _Account:
    name: str
    role: Role = Role.STANDBY
    epoch: int | None = None
    since: float | None = None
    owner: LeaseInfo | None = None
    note: str = "waiting for the first round"
    fenced: int = 0
    takeovers: dict[str, int] = field(default_factory=dict)


class Ownership:
    """The lease keeper of one process (module docstring).

    ``accounts``: every configured account, in the order free ones are taken.
    ``activate(account)`` / ``deactivate(account, reason)`` / ``set_entries(account, open,
    reason, hold)``: the supervisor's side, called on the keeper's thread (activate may
    raise: the account is then fenced again and retried). ``request_sync(account)``: ask for
    the takeover's first sync. ``installation``: this database's (``None``: no check).
    """

    def __init__(
        self,
        store: LeaseStore,
        accounts: Sequence[str],
        settings: LeaseSettings,
        *,
        activate: Callable[[str], object],
        deactivate: Callable[[str, str], object],
        set_entries: Callable[[str, bool, str, bool], object],
        request_sync: Callable[[str], object],
        set_adoption: Callable[[str, bool], object] | None = None,
        installation: Installation | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings
        self._order = list(accounts)
        self._accounts = {a: _Account(a) for a in accounts}
        self._activate = activate
        self._deactivate = deactivate
        self._set_entries = set_entries
        self._request_sync = request_sync
        self._set_adoption = set_adoption
        self._clock = clock
        # account -> (epoch, valid until): read without a lock by the gate (one dict read)
        self._tokens: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()  # requests from other threads
        self._fence_requests: dict[str, str] = {}
        self._check_requests: set[str] = set()
        self._synced: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._no_take = False
        self._draining: dict[str, Callable[[], bool]] = {}  # fenced, actors still stopping
        self._db_ok: bool | None = None
        self._db_note = ""
        self._rounds = 0
        self._partitions = PartitionUpkeep(store, clock)
        self._started_at = clock()
        self.guard = (
            InstallationGuard(
                store,
                installation,
                set_entries=set_entries,
                set_adoption=set_adoption,
                reopen=self.reopen,
            )
            if installation
            else None
        )

    # -- the gate (any thread)

    def token(self, account: str) -> int | None:
        """The lease epoch while this process owns ``account`` and its validity lasts, else
        ``None``: the gate of its exchange calls and commits."""
        held = self._tokens.get(account)
        if held is None or self._clock() >= held[1]:
            return None
        return held[0]

    def seconds_left(self, account: str) -> float | None:
        """How long this process's lease of ``account`` stays valid from now (keeper's
        clock), or ``None`` when it holds none: asked by the exchange adapter as it stamps
        each place and cancel (:mod:`infra.exchange.client`). Any thread; never blocks."""
        held = self._tokens.get(account)
        return None if held is None else held[1] - self._clock()

    # -- requests from other threads

    def fence(self, account: str, why: str) -> None:
        """Stop acting on ``account`` now (an actor's write was refused: another process owns
        it): the gate closes at once, the keeper deactivates it on its thread."""
        if account not in self._accounts:
            return
        with self._lock:  # with _renew's update: a renewal in flight does not revive it
            self._tokens.pop(account, None)
            self._fence_requests.setdefault(account, why)
        self._wake.set()

    def check(self, account: str, why: str) -> None:
        """Renew ``account``'s lease now (a stale version: maybe another writer); a renewal
        that fails fences it."""
        log.info("account %s: checking the lease now (%s)", account, why)
        with self._lock:
            self._check_requests.add(account)
        self._wake.set()

    def not_owner(self, account: str, why: str, certain: bool) -> None:
        """The supervisor's ``ownership_listeners`` entry: fence when certain, else check."""
        if certain:
            self.fence(account, why)
        else:
            self.check(account, why)

    def synced(self, account: str) -> None:
        """A sync of ``account`` went through (its observations were inspected): a takeover
        may open entries now."""
        with self._lock:
            self._synced.add(account)
        self._wake.set()

    # -- lifecycle

    def start(self) -> None:
        """Run the first round on this thread (so that ``wait = False`` knows at once what it
        owns), then the keeper's thread."""
        self._round()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()

    def stop_taking(self) -> None:
        """Take no account from now on (the process is stopping)."""
        self._no_take = True

    def stop(self, release: Callable[[str], bool] | None = None) -> None:
        """Stop the keeper's thread (at once, also while it waits for leases), then give up
        every lease for which ``release(account)`` says nothing of this process can still
        send (the next owner takes it at once; a lease not given up expires). Records the
        stop in the heartbeat table. Idempotent."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.settings.timeout * 4 + 5)
        for st in self._accounts.values():
            epoch = st.epoch if st.role in (Role.OWNER, Role.TAKING_OVER) else None
            self._tokens.pop(st.name, None)
            if epoch is None:
                continue
            if release is not None and release(st.name):
                try:
                    self.store.release(st.name, epoch)
                    log.info("account %s: lease released (epoch %d)", st.name, epoch)
                except StoreError as exc:
                    log.warning("account %s: lease not released (%s): it expires", st.name, exc)
            else:
                log.warning("account %s: lease not released: it expires", st.name)
            st.role, st.epoch, st.note = Role.STANDBY, None, "stopped"
        try:
            self.store.stopped()
        except StoreError as exc:
            log.info("stop not recorded: %s", exc)

    @property
    def running(self) -> bool:
        """The keeper's thread is alive (the liveness check reads it)."""
        return self._thread is not None and self._thread.is_alive()

    # -- views (any thread)

    def view(self) -> list[AccountView]:
        now = self._clock()
        out = []
        for st in list(self._accounts.values()):
            held = self._tokens.get(st.name)
            valid = max(0.0, held[1] - now) if held is not None else 0.0
            alarm = self.guard.alarm(st.name) if self.guard is not None else None
            out.append(
                AccountView(
                    st.name,
                    st.role,
                    st.epoch if st.epoch is not None else (st.owner.epoch if st.owner else None),
                    st.since if st.epoch is not None else (st.owner.since if st.owner else None),
                    st.owner,
                    valid,
                    st.note,
                    alarm,
                    st.fenced,
                    sum(st.takeovers.values()),
                )
            )
        return out

    def owned(self) -> list[str]:
        return [a for a, st in self._accounts.items() if st.role in (Role.OWNER, Role.TAKING_OVER)]

    def waiting(self) -> list[str]:
        return [a for a, st in self._accounts.items() if st.role in (Role.STANDBY, Role.FENCED)]

    def readiness(self) -> str | None:
        """``None`` when this process owns accounts and has nothing fenced; else why not
        (:func:`~supervision.leases._model.readiness_problems`)."""
        return readiness_problems(
            self.view(), db_ok=self._db_ok, db_note=self._db_note, rounds=self._rounds
        )

    # -- the keeper's thread

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.renew_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._round()
            except Exception:
                log.exception("lease keeper round failed")

    def _round(self) -> None:
        self._rounds += 1
        with self._lock:
            fences, self._fence_requests = self._fence_requests, {}
            self._check_requests.clear()  # every round renews everything held
            synced, self._synced = self._synced, set()
        for account, why in fences.items():
            self._lose(account, f"another process owns it: {why}")
        self._renew()
        now = self._clock()
        for st in self._accounts.values():
            held = self._tokens.get(st.name)
            if st.role in (Role.OWNER, Role.TAKING_OVER) and (held is None or now >= held[1]):
                valid_s = self.settings.lease_s - self.settings.fence_margin_s
                self._lose(
                    st.name,
                    f"lease not renewed within {valid_s:.1f}s "
                    f"({self._db_note or 'database unreachable'})",
                )
        if not self._stop.is_set() and not self._no_take:
            self._take()
        for account in synced:
            self._opened(account)
        if self.guard is not None and self._db_ok:
            self.guard.persist_and_refresh(self.owned())
        self._heartbeat()

    def _renew(self) -> None:
        held = {
            a: st.epoch
            for a, st in self._accounts.items()
            if st.role in (Role.OWNER, Role.TAKING_OVER) and st.epoch is not None
        }
        if not held:
            return
        try:
            sent_at, renewed = self.store.renew(held)
        except StoreError as exc:
            self._db_failed(exc)
            return
        self._db_good()
        valid = sent_at + self.settings.lease_s - self.settings.fence_margin_s
        lost = []
        with self._lock:
            for account, epoch in held.items():
                if account not in renewed:
                    lost.append(account)
                elif account in self._tokens and account not in self._fence_requests:
                    self._tokens[account] = (epoch, valid)  # not fenced meanwhile
        if lost:
            try:
                now = self.store.leases(lost)
            except StoreError:
                now = {}
            for account in lost:
                info = now.get(account)
                self._accounts[account].owner = info
                self._lose(
                    account,
                    "lease lost: " + (info.describe() if info is not None else "no lease row"),
                )

    def _take(self) -> None:
        s = self.settings
        owned = len(self.owned())
        for account, stopped in list(self._draining.items()):
            if stopped():
                del self._draining[account]
        wanted = [
            st
            for a in self._order
            if (st := self._accounts[a]).role in (Role.STANDBY, Role.FENCED)
            and a not in self._draining
        ]
        if not wanted:
            return
        if s.max_accounts is not None and owned >= s.max_accounts:
            self._read_owners(wanted, f"no room here (max_accounts = {s.max_accounts})")
            return
        first = self._rounds == 1
        for st in wanted:
            if s.max_accounts is not None and owned >= s.max_accounts:
                self._read_owners([st], f"no room here (max_accounts = {s.max_accounts})")
                continue
            try:
                got = self.store.acquire(st.name)
            except StoreError as exc:
                self._db_failed(exc)
                if st.role is Role.STANDBY:
                    st.note = f"cannot take the lease: {exc}"
                return
            self._db_good()
            if isinstance(got, Grant):
                self._granted(st, got)
                owned += 1
                continue
            st.owner = got
            st.note = f"owned by another process: {got.describe()}"
            if first and not s.wait:
                st.role = Role.LEFT_OUT
                st.note = (
                    f"account {st.name!r} is already managed by another process "
                    f"({got.describe()}); this process will not trade it"
                )
                log.error("%s", st.note)
                self._set_entries(st.name, False, NOT_OWNER, False)

    def _read_owners(self, accounts: list[_Account], note: str) -> None:
        try:
            infos = self.store.leases(a.name for a in accounts)
        except StoreError as exc:
            self._db_failed(exc)
            return
        self._db_good()
        for st in accounts:
            st.owner = infos.get(st.name)
            st.note = note
            if st.role is Role.STANDBY and self._rounds == 1 and not self.settings.wait:
                st.role = Role.LEFT_OUT
                st.note = f"left out: {note}"
                self._set_entries(st.name, False, NOT_OWNER, False)

    def _granted(self, st: _Account, grant: Grant) -> None:
        s = self.settings
        st.role, st.epoch = Role.TAKING_OVER, grant.epoch
        st.since = time.time()
        st.owner = None
        st.takeovers[grant.how] = st.takeovers.get(grant.how, 0) + 1
        st.note = f"taken ({grant.how}), waiting for the first sync"
        self._tokens[st.name] = (grant.epoch, grant.sent_at + s.lease_s - s.fence_margin_s)
        prev = grant.previous
        log.log(
            logging.INFO if grant.how == "free" else logging.WARNING,  # taken from another
            "account %s: lease taken, epoch %d (%s%s); recovering, entries after the first sync",
            st.name,
            grant.epoch,
            grant.how,
            f", previous: {prev.describe()}" if prev is not None and prev.owner else "",
        )
        self._set_entries(st.name, False, NOT_OWNER, True)
        try:
            self._activate(st.name)
        except Exception as exc:
            log.error("account %s: recovery after the takeover failed: %r", st.name, exc)
            st.note = f"recovery failed ({exc}); retried"
            self._lose(st.name, f"recovery failed: {exc}")
            return
        self._request_sync(st.name)

    def _opened(self, account: str) -> None:
        st = self._accounts.get(account)
        if st is None or st.role is not Role.TAKING_OVER or self.token(account) is None:
            return
        st.role = Role.OWNER
        st.note = "owner"
        if self.guard is not None and self.guard.alarm(account) is not None:
            return  # the alarm keeps entries closed
        log.info("account %s: first sync done, entries open (epoch %s)", account, st.epoch)
        self._set_entries(account, True, "", False)

    def reopen(self, account: str) -> None:
        """Entries may open again (an installation alarm was confirmed); keeper's thread."""
        st = self._accounts.get(account)
        if st is not None and st.role is Role.OWNER and self.token(account) is not None:
            self._set_entries(account, True, "", False)

    def _lose(self, account: str, why: str) -> None:
        st = self._accounts.get(account)
        if st is None or st.role not in (Role.OWNER, Role.TAKING_OVER):
            self._tokens.pop(account, None)
            return
        self._tokens.pop(account, None)
        epoch = st.epoch
        st.role, st.epoch, st.fenced = Role.FENCED, None, st.fenced + 1
        st.note = why
        log.error(
            "account %s FENCED (epoch %s): %s; no order, sync or commit for it from this "
            "process until it holds the lease again",
            account,
            epoch,
            why,
        )
        try:
            stopped = self._deactivate(account, LOST)
        except Exception:
            log.exception("account %s: deactivation failed", account)
        else:
            if callable(stopped):
                self._draining[account] = stopped

    def _heartbeat(self) -> None:
        if self._db_ok is False:
            return
        try:
            self.store.heartbeat(self.owned(), self.waiting(), self.settings.max_accounts)
        except StoreError as exc:
            self._db_failed(exc)
            return
        self._partitions.run_if_due()

    def _db_failed(self, exc: StoreError) -> None:
        if self._db_ok is not False:
            log.warning("lease keeper: database unavailable: %s", exc)
        self._db_ok = False
        self._db_note = str(exc)

    def _db_good(self) -> None:
        if self._db_ok is False:
            log.info("lease keeper: database back")
        self._db_ok = True
        self._db_note = ""

    # -- metrics

    def collector(self, supervisor_counts: Callable[[], dict[str, tuple[int, int]]]) -> Collector:
        """A Prometheus collector of the ownership series (see the README); evaluated at
        scrape time. ``supervisor_counts``: ``account -> (messages dropped as not owner,
        signals held)``."""
        return OwnershipCollector(self.view, self.store.identity, supervisor_counts)
