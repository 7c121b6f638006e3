"""Who may use the control endpoint: the token (Bearer; HTTP Basic with the token as
password for the page) compared in constant time, and the page without a token on a loopback
address for a client that names a loopback host (a DNS-rebinding page names another).

Pure; called on the control server's worker threads. Never quotes what was sent.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

__all__ = ["authorize", "host_name", "loopback_address"]


def loopback_address(host: str) -> bool:
    """``localhost`` or a loopback IP address (brackets of an IPv6 literal allowed)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host_header: str | None) -> str:
    """The host part of a ``Host`` header (``127.0.0.1:9491`` → ``127.0.0.1``)."""
    h = (host_header or "").strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rpartition(":")[0] if ":" in h else h


def authorize(
    authorization: str | None, host: str | None, token: bytes, *, page: bool, loopback: bool
) -> str | None:
    """``None`` when a request with these ``Authorization`` and ``Host`` headers may go on,
    else why not. ``page``: the live view's page (Basic accepted; without a token on a
    ``loopback`` endpoint when ``Host`` names a loopback address)."""
    if authorization is None:
        if page and loopback:
            if loopback_address(host_name(host)):
                return None
            return "no token, and the Host header does not name a loopback address"
        return "no token (send Authorization: Bearer <token>)"
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        given = value.strip().encode("utf-8", "replace")
    elif scheme == "basic" and page:
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return "malformed Basic credentials"
        given = decoded.partition(b":")[2]
    else:
        return "unsupported Authorization scheme (use Bearer)"
    if not hmac.compare_digest(given, token):
        return "wrong token"
    return None
