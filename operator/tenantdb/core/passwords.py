"""Generated passwords and the SCRAM-SHA-256 verifiers sent in their place.

The server only ever receives the verifier (RFC 5802/7677, the format
PostgreSQL stores in ``pg_authid``), so the cleartext password never reaches
server logs or ``pg_stat_statements``, whatever ``log_statement`` says.
"""

import base64
import hashlib
import hmac
import secrets

SCRAM_ITERATIONS = 4096
"""PostgreSQL's default ``scram_iterations``."""
ROLE_SCRAM_ITERATIONS = 64
"""Iterations of the verifiers of roles only the operator logs in as.

Their passwords are 256-bit HMAC outputs, not words a person chose: key
stretching protects guessable passwords against a stolen verifier and adds
nothing here, while every iteration is paid again on each new connection
(see docs/benchmarks.md for what the operator's per-role sessions cost).
"""


def generate() -> str:
    """A new random password: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def role_password(key: bytes, role: str) -> str:
    """The password of a role only the operator logs in as (a tenant's owner role).

    Derived from the operator's credentials key, so nothing is stored: every
    replica holding the key computes the same password, and a new key is
    taken up by re-setting the verifier when a login is refused.
    """
    digest = hmac.digest(key, b"tenantdb-role:" + role.encode(), "sha256")
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def scram_verifier(
    password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The ``SCRAM-SHA-256$...`` string PostgreSQL accepts as a password."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
