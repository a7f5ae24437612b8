"""Password logins: the CALLCARD_AUTH format as the README documents it, and errors that never show a hash."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.auth import hash_password, load_accounts, main, parse_accounts, verify_password
from backend.errors import ConfigError

# Few iterations keep the tests fast; the format and the check are the production ones.
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
HASHES = {name: hash_password(password, iterations=1_000) for name, password in PASSWORDS.items()}


def _secret_parts(encoded: str) -> list[str]:
    """The whole hash and its salt and digest: none of them may appear in a message."""
    _, _, salt, digest = encoded.split("$")
    return [encoded, salt, digest]


def _assert_shows_no_hash(message: str) -> None:
    assert "$" not in message, message
    for encoded in HASHES.values():
        for part in _secret_parts(encoded):
            assert part not in message, message


def test_the_readme_form_with_two_real_hashes_works() -> None:
    accounts = load_accounts(f"alice:{HASHES['alice']},bob:{HASHES['bob']}")
    assert accounts is not None and accounts.names == ["alice", "bob"]
    assert accounts.authenticate("alice", "alice-secret") and accounts.authenticate("bob", "bob-secret")
    assert not accounts.authenticate("alice", "bob-secret")


def test_three_accounts_inline_are_not_mistaken_for_a_file_name_too_long_to_open() -> None:
    # Three entries are longer than a file name may be: checking whether such a "file" exists used to raise.
    spec = ",".join(f"{name}:{encoded}" for name, encoded in HASHES.items())
    assert len(spec) > 255
    accounts = load_accounts(spec)
    assert accounts is not None and accounts.names == ["alice", "bob", "carol"]


@pytest.mark.parametrize("separator", [",", ";", "\n", ", ", " ; ", "\r\n"])
def test_commas_semicolons_and_new_lines_all_separate_accounts(separator: str) -> None:
    text = f"alice:{HASHES['alice']}{separator}carol:{HASHES['carol']}:lead{separator}"
    accounts = parse_accounts(text)
    assert [(a.name, a.role) for a in accounts] == [("alice", "user"), ("carol", "lead")]
    assert verify_password("carol-secret", accounts[1].password_hash)


def test_a_comment_may_hold_commas_and_semicolons(tmp_path: Path) -> None:
    file = tmp_path / "accounts"
    file.write_text(
        f"# Support team, updated weekly; ask Carol\nalice:{HASHES['alice']}  # Alice, first line; support\n"
        f"carol:{HASHES['carol']}:lead\n",
        encoding="utf-8",
    )
    accounts = load_accounts(str(file), leads=["bob"])
    assert accounts is not None and accounts.names == ["alice", "carol"]
    assert accounts.is_lead("carol") and accounts.is_lead("bob") and not accounts.is_lead("alice")


def test_an_entry_printed_by_the_hash_command_parses_back(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("dana-secret\n"))
    assert main(["hash", "--user", "dana", "--role", "lead", "--iterations", "1000"]) == 0
    entry = capsys.readouterr().out.strip()
    (account,) = parse_accounts(f"alice:{HASHES['alice']},{entry}")[1:]
    assert (account.name, account.role) == ("dana", "lead")
    assert verify_password("dana-secret", account.password_hash)


A, B = HASHES["alice"], HASHES["bob"]
ERRORS = {
    # The README's entries joined by ':' instead of ',': bob's hash lands where the role goes.
    "a hash where the role goes": (f"alice:{A}:{B}", "the third field is not a role but another hash"),
    "a hash first": (f"{A}:alice", "the first field is not a valid user name"),
    "a password instead of a hash": ("alice:alice-secret", "must be a password hash"),
    "two entries without a separator": (f"alice:{A}bob:{B}", "the third field is not a role but another hash"),
    "four fields": (f"alice:{A}:lead:{B}", "got 4 fields"),
    "a user twice": (f"alice:{A},alice:{B}", "user 'alice' is listed twice"),
    "an unknown role word": (f"alice:{A}:admin", "unknown role 'admin'"),
    "a bare hash": (A, "CALLCARD_AUTH is neither user:hash entries nor a readable file"),
    "an unknown role that is no word": (f"alice:{A}:x1$", "the third field is not a role; use one of user, lead"),
    "no accounts": (" , ;  # alice:old-entry", "lists no accounts"),
}


@pytest.mark.parametrize("spec, expected", ERRORS.values(), ids=ERRORS.keys())
def test_every_error_says_what_is_wrong_without_showing_a_hash(spec: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_accounts(spec)
    message = str(caught.value)
    assert expected in message
    _assert_shows_no_hash(message)


def test_errors_in_a_file_name_its_line_and_show_no_hash(tmp_path: Path) -> None:
    file = tmp_path / "accounts"
    file.write_text(f"alice:{A}\n\nbob:{A}:{B}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 3 \\(bob\\): the third field is not a role") as caught:
        load_accounts(str(file))
    _assert_shows_no_hash(str(caught.value))


_FIELDS = st.one_of(
    st.sampled_from([*HASHES.values(), "alice", "bob", "lead", "user", "admin", "", " "]),
    st.text(alphabet=st.characters(blacklist_characters=",;:\n\r#", blacklist_categories=("Cs",)), max_size=12),
)
_ENTRIES = st.lists(st.lists(_FIELDS, min_size=1, max_size=4).map(":".join), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(entries=_ENTRIES, separator=st.sampled_from([",", ";", "\n", ", "]))
def test_no_mix_of_names_hashes_and_junk_makes_an_error_that_shows_a_hash(entries: list[str], separator: str) -> None:
    try:
        accounts = parse_accounts(separator.join(entries))
    except ConfigError as error:
        _assert_shows_no_hash(str(error))
        return
    for account in accounts:
        assert re.fullmatch(r"[A-Za-z0-9_.@+-]{1,64}", account.name) and account.role in ("user", "lead")
        assert account.password_hash in HASHES.values()
