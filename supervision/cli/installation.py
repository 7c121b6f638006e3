"""``confirm-installation --account A``: an operator confirms the orders of another
installation (another database) seen on the account (I7), so that its entries resume.

Main thread; writes the confirmation to the database (no trading keys). The supervisor
trading the account reads it within a few seconds.
"""

from __future__ import annotations

import argparse
import getpass
import socket
from typing import Any

from supervision.cli.common import (
    EXIT_OK,
    config_arg,
    load_for_reading,
    select_accounts,
    with_store,
)
from supervision.cli.render import timestamp

__all__ = ["add_parser", "cmd_confirm_installation"]


def cmd_confirm_installation(args: argparse.Namespace) -> int:
    """Confirm the installation alarms of one account (I7): its entries resume."""
    cfg = load_for_reading(args)  # writes the confirmation only
    (account,) = select_accounts(cfg, args.account)
    by = f"{getpass.getuser()}@{socket.gethostname()}"

    def confirm(store: Any, dsn: str) -> int:
        from infra.store.ownership import LeaseStore  # noqa: PLC0415

        with LeaseStore(dsn, timeout=10.0) as leases:
            done = leases.confirm(account, by, args.installation)
        if not done:
            print(f"nothing to confirm: account {account} has no unconfirmed alarm")
        for a in done:
            print(
                f"confirmed: account {a.account}, installation {a.label} ({a.client_id} on "
                f"{a.symbol}, seen {timestamp(a.seen_at)}) by {by}; entries resume within a few "
                "seconds"
            )
        return EXIT_OK

    return with_store(cfg, confirm)


def add_parser(sub: Any) -> None:
    """The ``confirm-installation`` subcommand on ``sub`` (the parser's subparsers)."""
    confirm = sub.add_parser(
        "confirm-installation",
        help="confirm another installation's orders on an account (entries resume)",
        description="Orders with our prefix and another installation's id (another database) "
        "were seen on the account and stopped its entries. Confirm that this is known (e.g. "
        "the database was replaced, and its leftover orders are handled by hand): the "
        "supervisor trading the account resumes entries, and that installation's orders do "
        "not stop them again. Orders of another installation are never cancelled by us.",
    )
    config_arg(confirm)
    confirm.add_argument("--account", required=True, help="the account")
    confirm.add_argument(
        "--installation",
        type=int,
        metavar="ID",
        help="only this installation id (default: every unconfirmed one)",
    )
    confirm.set_defaults(fn=cmd_confirm_installation)
