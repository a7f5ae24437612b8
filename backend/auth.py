"""Password logins: PBKDF2 hashes, the CALLCARD_AUTH format (inline or a file), and `python -m backend.auth hash`.

CALLCARD_AUTH holds accounts, `user:hash[:role]`, separated by `,`, `;` or new lines, or the path of a file with one
account a line (`#` starts a comment). `hash` is `pbkdf2_sha256$<iterations>$<salt>$<digest>` (base64, as
`python -m backend.auth hash` prints it); `role` is `user` (the default) or `lead` (may read everyone's audit).
Neither user names nor hashes can hold a separator. Error messages never quote a hash, or text that could be one.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import logging
import re
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.errors import ConfigError

__all__ = [
    "Account",
    "Accounts",
    "ROLES",
    "hash_password",
    "verify_password",
    "parse_accounts",
    "load_accounts",
    "main",
]

log = logging.getLogger(__name__)

ROLES = ("user", "lead")
_ALGORITHM = "pbkdf2_sha256"
# OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256; logins are rare, so the cost (~0.3 s) is paid once a session.
_DEFAULT_ITERATIONS = 600_000
_MIN_ITERATIONS = 1_000
_SALT_BYTES = 16
_USER_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")
_ENTRY_SEPARATORS = re.compile(r"[,;]")
# What a misplaced field may be quoted as in an error: a short word. A hash (or a password) is never quoted.
_QUOTABLE_ROLE = re.compile(r"^[A-Za-z_-]{1,20}$")


@dataclass(frozen=True)
class Account:
    """One person who may sign in: a name, a password hash, and a role."""

    name: str
    password_hash: str
    role: str = "user"


class Accounts:
    """The accounts that may sign in, and who among them (or CALLCARD_LEADS) is a support lead."""

    def __init__(self, accounts: Iterable[Account], *, leads: Iterable[str] = ()) -> None:
        self._accounts = {account.name: account for account in accounts}
        self._leads = {name for name in leads if name} | {a.name for a in self._accounts.values() if a.role == "lead"}
        # Unknown names are checked against a real hash too, so a login's timing does not reveal who has an account.
        self._decoy = hash_password(secrets.token_urlsafe(16), iterations=_DEFAULT_ITERATIONS)

    def __len__(self) -> int:
        return len(self._accounts)

    @property
    def names(self) -> list[str]:
        return sorted(self._accounts)

    def authenticate(self, name: str, password: str) -> bool:
        """True when `password` is `name`'s password."""
        account = self._accounts.get(name)
        if account is None:
            verify_password(password, self._decoy)
            return False
        return verify_password(password, account.password_hash)

    def is_lead(self, name: str) -> bool:
        return name in self._leads


def hash_password(password: str, *, iterations: int = _DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """`pbkdf2_sha256$iterations$salt$digest` for `password` (a fresh random salt unless one is given)."""
    if iterations < _MIN_ITERATIONS:
        raise ValueError(f"Use at least {_MIN_ITERATIONS} iterations.")
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{_ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches `encoded` (constant-time comparison); False for a malformed hash."""
    try:
        algorithm, iterations_text, salt_text, digest_text = encoded.split("$")
        iterations = int(iterations_text)
        salt, expected = _unb64(salt_text), _unb64(digest_text)
    except ValueError:
        return False
    if algorithm != _ALGORITHM or iterations < _MIN_ITERATIONS or not expected:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def parse_accounts(text: str, *, where: str = "CALLCARD_AUTH") -> list[Account]:
    """Accounts from `user:hash[:role]` entries separated by `,`, `;` or new lines; ConfigError names the bad entry."""
    accounts: list[Account] = []
    seen: set[str] = set()
    multiline = len(text.strip().splitlines()) > 1
    number = 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        for entry in _ENTRY_SEPARATORS.split(line.split("#", 1)[0]):
            entry = entry.strip()
            if not entry:
                continue
            number += 1
            here = f"{where}, line {line_number}" if multiline else f"{where}, entry {number}"
            account = _account(entry, here=here)
            if account.name in seen:
                raise ConfigError(f"{here}: user {account.name!r} is listed twice.")
            seen.add(account.name)
            accounts.append(account)
    return accounts


def _account(entry: str, *, here: str) -> Account:
    """One `user:hash[:role]` entry; the errors quote the user name only when it is a valid one."""
    fields = [field.strip() for field in entry.split(":")]
    if len(fields) not in (2, 3):
        raise ConfigError(
            f"{here}: expected user:hash or user:hash:role, got {len(fields)} fields "
            "(separate accounts with a comma, a semicolon or a new line)."
        )
    name, password_hash = fields[0], fields[1]
    role = fields[2] if len(fields) == 3 else "user"
    if not _USER_NAME.match(name):
        hint = "; the user name comes first" if _is_hash(name) else ""
        raise ConfigError(
            f"{here}: the first field is not a valid user name (1 to 64 letters, digits or _.@+-){hint}."
        )
    if not _is_hash(password_hash):
        raise ConfigError(
            f"{here} ({name}): the second field must be a password hash made by `python -m backend.auth hash`, "
            "not the password itself."
        )
    if role not in ROLES:
        if _is_hash(role):
            raise ConfigError(
                f"{here} ({name}): the third field is not a role but another hash; "
                "separate accounts with a comma, a semicolon or a new line."
            )
        shown = f"unknown role {role!r}" if _QUOTABLE_ROLE.match(role) else "the third field is not a role"
        raise ConfigError(f"{here} ({name}): {shown}; use one of {', '.join(ROLES)}.")
    return Account(name=name, password_hash=password_hash, role=role)


def load_accounts(spec: str | None, *, leads: Iterable[str] = ()) -> Accounts | None:
    """The accounts CALLCARD_AUTH names (inline entries or a file), or None when logins are off."""
    if spec is None or not spec.strip():
        return None
    spec = spec.strip()
    path = Path(spec).expanduser()
    if ":" not in spec or _is_file(path):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            shown = "CALLCARD_AUTH" if "$" in spec else f"CALLCARD_AUTH={spec}"  # a bare hash is not shown
            raise ConfigError(
                f"{shown} is neither user:hash entries nor a readable file ({error.strerror})."
            ) from None
        accounts = parse_accounts(text, where=f"CALLCARD_AUTH file {path}")
    else:
        accounts = parse_accounts(spec)
    if not accounts:
        raise ConfigError("CALLCARD_AUTH lists no accounts: add user:hash entries, or unset it to turn logins off.")
    log.info("logins on: %d accounts", len(accounts))
    return Accounts(accounts, leads=leads)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m backend.auth hash [--user NAME] [--role lead]`: print a hash (or a whole entry) for CALLCARD_AUTH."""
    parser = argparse.ArgumentParser(prog="python -m backend.auth", description="Make password hashes for CALLCARD_AUTH.")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("hash", help="hash a password read from the terminal (or from stdin when piped)")
    make.add_argument("--user", help="print a whole `user:hash[:role]` entry for this user")
    make.add_argument("--role", choices=ROLES, default="user", help="the role for --user (default: user)")
    make.add_argument("--iterations", type=int, default=_DEFAULT_ITERATIONS, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            sys.stderr.write("The passwords differ.\n")
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        sys.stderr.write("The password is empty.\n")
        return 1
    if options.user is not None and not _USER_NAME.match(options.user):
        sys.stderr.write("The user name is invalid (1 to 64 letters, digits or _.@+-).\n")
        return 1
    encoded = hash_password(password, iterations=options.iterations)
    if options.user is None:
        sys.stdout.write(encoded + "\n")
    else:
        role = f":{options.role}" if options.role != "user" else ""
        sys.stdout.write(f"{options.user}:{encoded}{role}\n")
    return 0


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # inline entries can be longer than a file name may be
        return False


def _is_hash(text: str) -> bool:
    parts = text.split("$")
    return len(parts) == 4 and parts[0] == _ALGORITHM and parts[1].isdigit()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as error:
        raise ValueError("not base64") from error


if __name__ == "__main__":
    raise SystemExit(main())
