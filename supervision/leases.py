"""One owner per account, fenced (I7): the lease keeper and the installation check.

:class:`Ownership` is the process's side of the rule whose database side is
:class:`infra.store.ownership.LeaseStore`. It runs one thread that, every ``renew_s``:

1. renews every lease this process holds, in one statement. A renewal that comes back sets
   the account's *validity*: ``sent_at + lease_s - fence_margin_s`` on ``time.monotonic()``,
   where ``sent_at`` is taken before the statement left (the database's expiry is later than
   ``sent_at + lease_s``: the validity ends at least ``fence_margin_s`` before the lease can
   expire, whatever the clocks of the two hosts do within that margin). A lease that did not
   come back (expired, taken over) is *lost*;
2. fences every account whose validity ran out (the database could not be reached in time)
   or whose lease was lost, and every account an actor reported (a write refused because
   the epoch is stale, :class:`~actors.ports.Fenced`): its gate closes, the supervisor stops
   its actors and drops its queued calls (:meth:`Supervisor.deactivate`), and the account
   waits for its lease again, like a standby;
3. takes free accounts while it has room (``max_accounts``): a lease is taken only when it
   is free, expired, its own, or its owner is certainly dead on this host
   (:meth:`LeaseStore.acquire`). The supervisor activates the account (recovery of its open
   positions, S5) and asks for a sync; entries open once that first sync went through and
   showed no order of another installation (:class:`InstallationGuard`);
4. records a heartbeat (what it owns, what it waits for), persists installation alarms and
   reads confirmations.

:meth:`Ownership.token` is the gate: the epoch while the account is owned and valid, else
``None``. It reads the clock each time, so it closes at the validity's end to the
microsecond even if the keeper's thread is held up (a database call is bounded by
``timeout``). The worker pools ask it immediately before each exchange call leaves, the
store before each commit: from the end of the validity on, nothing is sent and nothing is
written for the account by this process. Within its validity, an owner that lost the
database goes on protecting as before (writes retried, stops placed).

Threads: the keeper's own thread (``lease-keeper``); :meth:`token`, :meth:`fence`,
:meth:`check`, :meth:`view` and :meth:`InstallationGuard.inspect` from any thread.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from actors.messages import Message, OrderUpdate, SyncObservation
from actors.ports import StoreError
from actors.state import Installation
from infra.store.ownership import Grant, InstallationAlert, LeaseInfo, LeaseStore

__all__ = [
    "AccountView",
    "InstallationGuard",
    "LeaseSettings",
    "Ownership",
    "Role",
]

log = logging.getLogger(__name__)

#: Entry refusals while an account waits here (signals are held instead, see the
#: supervisor), when it was lost, and while another installation trades it.
NOT_OWNER = "not_owner"
LOST = "ownership_lock_lost"
FOREIGN = "foreign_installation"
PARTITIONS_EVERY_S = 3600.0
"""How often the keeper makes the history's monthly partitions ahead."""


class Role(enum.StrEnum):
    """What this process is for an account."""

    OWNER = "owner"  # holds the lease, entries open (unless an installation alarm)
    TAKING_OVER = "taking_over"  # holds the lease, first sync not done yet
    STANDBY = "standby"  # waits: another process owns it, or no room here
    FENCED = "fenced"  # lost it (could not renew in time, or taken over); waits again
    LEFT_OUT = "left_out"  # owned elsewhere at start and account_lock_wait = false


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """``lease_s``: a lease's length from its last renewal (database clock); ``renew_s``:
    how often the keeper renews; ``fence_margin_s``: how long before the lease can expire
    the owner stops (must exceed any clock-rate difference over ``lease_s`` and the time an
    exchange call takes to leave once allowed); ``max_accounts``: at most this many owned
    here; ``wait``: take accounts that become free later (``False``: only at start);
    ``timeout``: the bound of each database call of the keeper; ``hold_s``: how long the
    supervisor holds the signals of an account that waits for its lease."""

    lease_s: float = 10.0
    renew_s: float = 2.0
    fence_margin_s: float = 2.0
    max_accounts: int | None = None
    wait: bool = True
    timeout: float = 2.0
    hold_s: float = 30.0

    def __post_init__(self) -> None:
        if not (self.renew_s > 0 and 0 < self.fence_margin_s < self.lease_s):
            raise ValueError(f"bad lease settings: {self}")
        if self.renew_s >= self.lease_s - self.fence_margin_s:
            raise ValueError(
                f"renew_s ({self.renew_s}) must be below lease_s - fence_margin_s "
                f"({self.lease_s - self.fence_margin_s}): the owner would fence itself "
                "between two renewals"
            )
        if self.max_accounts is not None and self.max_accounts < 1:
            raise ValueError(f"max_accounts must be >= 1, got {self.max_accounts}")


@dataclass(frozen=True, slots=True)
class AccountView:
    """One account as this process sees it (readiness, metrics, ``status``).

    ``epoch`` and ``since`` are this process's when it owns the account, else the owner's
    as last read; ``owner`` describes the lease as last read from the database;
    ``valid_s``: seconds of validity left here (owner only); ``alarm``: the installation id
    of another installation trading the account (unconfirmed), if any."""

    account: str
    role: Role
    epoch: int | None
    since: float | None
    owner: LeaseInfo | None
    valid_s: float
    note: str
    alarm: str | None = None
    fenced: int = 0
    takeovers: int = 0


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
        self._partitions_due: float | None = None  # the next ensure_partitions (keeper clock)
        self._started_at = clock()
        self.guard = InstallationGuard(self, installation) if installation else None

    # -- the gate (any thread)

    def token(self, account: str) -> int | None:
        """The lease epoch while this process owns ``account`` and its validity lasts, else
        ``None``: the gate of its exchange calls and commits."""
        held = self._tokens.get(account)
        if held is None or self._clock() >= held[1]:
            return None
        return held[0]

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
        """``None`` when this process owns accounts and has nothing fenced; else why not:
        a standby that owns nothing (and what it waits for, owned by whom), a fenced
        account, an account nobody owns that this process has no room for."""
        problems = []
        views = self.view()
        fenced = [v for v in views if v.role is Role.FENCED]
        if fenced:
            problems.append("fenced: " + ", ".join(f"{v.account} ({v.note})" for v in fenced))
        if not any(v.role in (Role.OWNER, Role.TAKING_OVER) for v in views):
            waits = [
                f"{v.account} ({v.owner.describe() if v.owner else v.note})"
                for v in views
                if v.role is Role.STANDBY
            ]
            problems.append(
                "standby: owns no account" + (f"; waits for {', '.join(waits)}" if waits else "")
            )
        unowned = [
            v.account
            for v in views
            if v.role is Role.STANDBY and (v.owner is None or v.owner.expired)
        ]
        if unowned and self._db_ok and self._rounds > 1:
            problems.append("owned by no process, no room here: " + ", ".join(unowned))
        if self._db_ok is False:
            problems.append(f"leases not renewed: {self._db_note}")
        return "; ".join(problems) if problems else None

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
        now = self._clock()
        if self._partitions_due is None or now >= self._partitions_due:
            # Monthly partitions of the history, made ahead (a run of months never writes
            # into the default partition). Hourly; a failure is retried next round.
            try:
                self.store.ensure_partitions()
                self._partitions_due = now + PARTITIONS_EVERY_S
            except StoreError as exc:
                log.error("lease keeper: could not make the history's partitions: %s", exc)

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
        return _OwnershipCollector(self, supervisor_counts)


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

    def __init__(self, owner: Ownership, installation: Installation) -> None:
        self._owner = owner
        self.installation = installation
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
        owner = self._owner
        if owner._set_adoption is not None:
            owner._set_adoption(account, not alarmed)
        if alarmed:
            owner._set_entries(account, False, FOREIGN, False)

    def persist_and_refresh(self, owned: Iterable[str]) -> None:
        """Keeper's thread: record new alarms, load the database's (an account already
        carrying another installation's orders, confirmations)."""
        with self._lock:
            unsaved, self._unsaved = self._unsaved, []
        store = self._owner.store
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
                self._owner.reopen(account)


class _OwnershipCollector(Collector):
    def __init__(self, owner: Ownership, counts: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self._owner = owner
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        views = self._owner.view()
        role = GaugeMetricFamily(
            "ps_account_role",
            "1 for this process's role for the account: owner, taking_over, standby, fenced, "
            "left_out.",
            labels=["account", "role"],
        )
        owner = GaugeMetricFamily(
            "ps_account_owner",
            "1 for the account's owner as this process last saw it (itself when it owns it): "
            "host, pid and lease epoch.",
            labels=["account", "host", "pid", "epoch"],
        )
        since = GaugeMetricFamily(
            "ps_account_owner_since_seconds",
            "When the account's current lease epoch began (Unix time).",
            labels=["account"],
        )
        valid = GaugeMetricFamily(
            "ps_lease_valid_seconds",
            "Seconds this process may still act on the account without a renewal.",
            labels=["account"],
        )
        alarm = GaugeMetricFamily(
            "ps_installation_alarm",
            "1 while orders of another installation (another database) on the account are "
            "not confirmed by an operator: entries are stopped.",
            labels=["account", "installation"],
        )
        fenced = CounterMetricFamily(
            "ps_fenced",
            "Times this process fenced the account (lost or could not renew its lease).",
            labels=["account"],
        )
        takeovers = CounterMetricFamily(
            "ps_lease_takeovers",
            "Leases this process took for the account.",
            labels=["account"],
        )
        dropped = CounterMetricFamily(
            "ps_not_owner_messages",
            "Messages dropped because the account is not active in this process.",
            labels=["account"],
        )
        held = GaugeMetricFamily(
            "ps_held_signals",
            "Signals held for an account this process waits for (answered by its owner).",
            labels=["account"],
        )
        me = self._owner.store.identity
        for v in views:
            for r in Role:
                role.add_metric([v.account, r.value], 1.0 if v.role is r else 0.0)
            mine = v.role in (Role.OWNER, Role.TAKING_OVER)
            if mine and v.epoch is not None:
                owner.add_metric([v.account, me.host, str(me.pid), str(v.epoch)], 1.0)
            elif v.owner is not None and v.owner.owner is not None and not v.owner.expired:
                o = v.owner
                owner.add_metric([v.account, o.host or "", str(o.pid or ""), str(o.epoch)], 1.0)
            if v.since is not None:
                since.add_metric([v.account], v.since)
            valid.add_metric([v.account], v.valid_s)
            if v.alarm:
                for inst in v.alarm.split(", "):
                    alarm.add_metric([v.account, inst], 1.0)
            fenced.add_metric([v.account], float(v.fenced))
            takeovers.add_metric([v.account], float(v.takeovers))
        for account, (n_dropped, n_held) in self._counts().items():
            dropped.add_metric([account], float(n_dropped))
            held.add_metric([account], float(n_held))
        yield from (role, owner, since, valid, alarm, fenced, takeovers, dropped, held)


def register(registry: CollectorRegistry, collector: Collector) -> Callable[[], None]:
    """Register ``collector``; returns the function that unregisters it."""
    registry.register(collector)

    def undo() -> None:
        with contextlib.suppress(KeyError):
            registry.unregister(collector)

    return undo
