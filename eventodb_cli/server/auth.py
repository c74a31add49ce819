"""EventoDB tokens (PROTOCOL.md section 2): ``ns_<base64url(namespace)>_<64 hex>``.

The server stores only ``sha256hex(token)``. Parse errors carry the Go server's texts, because
they reach clients in ``details.error`` and in ``ns.create`` messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_HEX = frozenset("0123456789abcdefABCDEF")


class TokenError(ValueError):
    """A token that does not parse; ``str(e)`` is the Go server's error text."""


def generate_token(namespace: str) -> str:
    if not namespace:
        raise ValueError("namespace cannot be empty")
    enc = base64.urlsafe_b64encode(namespace.encode("utf-8")).decode("ascii").rstrip("=")
    return f"ns_{enc}_{secrets.token_hex(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def parse_token(token: str) -> str:
    """The namespace inside ``token``; raises ``TokenError`` with the Go wording."""
    if not token.startswith("ns_"):
        raise TokenError("invalid token format: missing 'ns_' prefix")
    parts = token[3:].split("_")
    if len(parts) != 2:
        raise TokenError(
            f"invalid token format: expected 2 parts after prefix, got {len(parts)}")
    enc, rand = parts
    if len(rand) != 64:
        raise TokenError("invalid token format: random part must be 64 hex characters, "
                         f"got {len(rand.encode('utf-8', 'surrogateescape'))}")
    for i, ch in enumerate(rand):
        if ch not in _HEX:
            raise TokenError("invalid token format: random part is not valid hexadecimal: "
                             f"encoding/hex: invalid byte: U+{ord(ch):04X} {ch!r}")
    for i, ch in enumerate(enc):
        if ch not in _B64URL:
            raise TokenError("invalid token format: namespace part is not valid base64url: "
                             f"illegal base64 data at input byte {i}")
    if len(enc) % 4 == 1:
        raise TokenError("invalid token format: namespace part is not valid base64url: "
                         f"illegal base64 data at input byte {len(enc) - 1}")
    try:
        raw = base64.urlsafe_b64decode(enc + "=" * (-len(enc) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - alphabet checked above
        raise TokenError("invalid token format: namespace part is not valid base64url") \
            from None
    namespace = raw.decode("utf-8", "replace")
    if not namespace:
        raise TokenError("invalid token format: namespace is empty")
    return namespace
