"""Who is using Callcard: nobody signs in (everyone is "local"), password logins (CALLCARD_AUTH), or Hugging Face
OAuth on Spaces. Hashing and the accounts format live in `backend.auth`; this module only maps a request to a name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from backend.auth import Accounts, load_accounts
from backend.settings import Settings

__all__ = ["LOCAL_USER", "People", "people_from_settings"]

LOCAL_USER = "local"

Mode = Literal["open", "password", "oauth"]


@dataclass(frozen=True)
class People:
    """How people sign in, and who among them is a support lead (may read everyone's audit)."""

    accounts: Accounts | None = None
    oauth: bool = False
    leads: frozenset[str] = frozenset()

    @classmethod
    def open(cls, *, leads: Iterable[str] = ()) -> People:
        """No logins: everyone is the user "local"."""
        return cls(leads=frozenset(leads))

    @property
    def mode(self) -> Mode:
        if self.accounts is not None:
            return "password"
        return "oauth" if self.oauth else "open"

    def user(self, request: Any, profile: Mapping[str, Any] | None = None) -> str | None:
        """The signed-in user's name for a gr.Request (and OAuth profile), or None when nobody is signed in."""
        if self.accounts is not None:
            return getattr(request, "username", None) or None
        if self.oauth:
            return getattr(profile, "username", None) or None
        return LOCAL_USER

    def is_lead(self, user: str | None) -> bool:
        if not user:
            return False
        return user in self.leads or (self.accounts is not None and self.accounts.is_lead(user))

    @property
    def login(self) -> Callable[[str, str], bool] | None:
        """The `auth=` callable for `launch()`, when password logins are on."""
        return self.accounts.authenticate if self.accounts is not None else None


def people_from_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> People:
    """Password logins when CALLCARD_AUTH is set; else Hugging Face OAuth on a Space with OAuth on; else open."""
    environ = os.environ if environ is None else environ
    leads = frozenset(settings.lead_names)
    accounts = load_accounts(settings.auth, leads=leads)
    if accounts is not None:
        return People(accounts=accounts, leads=leads)
    on_space_with_oauth = bool(environ.get("SPACE_ID")) and bool(environ.get("OAUTH_CLIENT_ID"))
    return People(oauth=on_space_with_oauth, leads=leads)
