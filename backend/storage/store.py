"""The Store: keyword-only reads and writes of users, conversations, messages, function calls and reply leases."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, func, select

from backend.errors import ConfigError, InvalidStateError, NotFoundError
from backend.storage.database import create_database_engine
from backend.storage.migrations import apply_migrations
from backend.storage.tables import (
    CallStatus,
    Conversation,
    ConversationLease,
    FunctionCallRecord,
    Message,
    MessageRole,
    User,
    utcnow,
)

__all__ = ["Store"]

log = logging.getLogger(__name__)
_Model = TypeVar("_Model", bound=SQLModel)


# No tool may run longer than this (the registry caps timeouts at an hour), so an older unfinished call is orphaned.
_LONGEST_CALL = timedelta(hours=1, minutes=5)


class Store:
    """The database behind Callcard: a SQLAlchemy engine plus keyword-only operations on it."""

    def __init__(self, url: str, *, instance: str | None = None) -> None:
        self.url = url
        self.instance = instance or socket.gethostname()
        self.engine = create_database_engine(url)
        take_lease = _TAKE_LEASE.get(self.engine.dialect.name)
        if take_lease is None:
            raise ConfigError("Callcard keeps its data in SQLite or PostgreSQL: set a sqlite:// or postgresql:// URL.")
        self._take_lease = take_lease
        # name -> User: every engine call looks its user up, and a user's id never changes once created.
        self._users: dict[str, User] = {}
        self.apply_migrations()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Store:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{data_dir / 'callcard.db'}")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def apply_migrations(self) -> list[str]:
        """Apply the migrations this database has not seen yet, in order; returns their names."""
        return apply_migrations(self.engine)

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:
            log.exception("database ping failed")
            return False

    # Users

    def user(self, name: str, *, role: str | None = None) -> User:
        """The user called `name`, created on first sight; `role` updates it when given."""
        cached = self._users.get(name)
        if cached is not None and (role is None or cached.role == role):
            return cached
        found = self._one(_USER_BY_NAME, {"name": name}, User)
        if found is None or (role is not None and found.role != role):
            found = self._save_user(name, role)
        self._users[name] = found
        return found

    def _save_user(self, name: str, role: str | None) -> User:
        with self.session() as session:
            user = session.exec(select(User).where(User.name == name)).first()
            if user is None:
                user = User(name=name, role=role or "user")
                session.add(user)
                try:
                    session.commit()
                except IntegrityError:  # another thread or replica created it first
                    session.rollback()
                    user = session.exec(select(User).where(User.name == name)).one()
            elif role is not None and user.role != role:
                user.role = role
                session.add(user)
                session.commit()
            return user

    # Conversations

    def create_conversation(self, *, owner: User, title: str | None = None, **settings: Any) -> Conversation:
        conversation = Conversation(owner_id=owner.id, title=title or "New conversation", **settings)
        with self.session() as session:
            session.add(conversation)
            session.commit()
        return conversation

    def add_conversation(
        self, conversation: Conversation, *, calls: Sequence[FunctionCallRecord], messages: Sequence[Message],
    ) -> Conversation:
        """Store a whole conversation with its calls and messages in one transaction: all of it, or none (an import)."""
        with self.session() as session:
            session.add(conversation)
            session.add_all(calls)
            session.add_all(messages)
            session.commit()
        return conversation

    def conversation(self, conversation_id: str, *, user: User) -> Conversation:
        """The conversation, if `user` owns it; otherwise NotFoundError (another's conversation is not revealed)."""
        conversation = self._one(_CONVERSATION_BY_ID, {"id": conversation_id}, Conversation)
        if conversation is None or conversation.owner_id != user.id or conversation.deleted_at is not None:
            raise NotFoundError("This conversation does not exist, or it is not yours.")
        return conversation

    def list_conversations(self, *, user: User, limit: int = 200) -> list[Conversation]:
        """The user's conversations, newest first."""
        with self.session() as session:
            statement = (
                select(Conversation)
                .where(Conversation.owner_id == user.id, Conversation.deleted_at.is_(None))  # type: ignore[union-attr]
                .order_by(Conversation.updated_at.desc(), Conversation.created_at.desc())  # type: ignore[attr-defined]
                .limit(limit)
            )
            return list(session.exec(statement))

    def update_conversation(self, conversation_id: str, *, user: User, **changes: Any) -> Conversation:
        """Change the conversation's fields, if `user` owns it (NotFoundError otherwise); returns it as now stored."""
        table = Conversation.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as connection:
            row = connection.execute(
                table.update()
                .where(table.c.id == conversation_id, table.c.owner_id == user.id, table.c.deleted_at.is_(None))
                .values(**changes, updated_at=utcnow())
                .returning(*table.c)
            ).first()
        if row is None:
            raise NotFoundError("This conversation does not exist, or it is not yours.")
        return _from_row(Conversation, row)

    def delete_conversation(self, conversation_id: str, *, user: User) -> None:
        """Take the conversation out of its owner's view and of every prompt; its calls stay in the audit.

        Its messages go; the conversation row stays, marked deleted, so each call's audit row still names it. A call
        still waiting for a person is settled as skipped, so nothing in a deleted conversation can be run.
        """
        self.conversation(conversation_id, user=user)
        calls = FunctionCallRecord.__table__  # type: ignore[attr-defined]
        now = utcnow()
        with self.engine.begin() as connection:
            connection.execute(ConversationLease.__table__.delete().where(  # type: ignore[attr-defined]
                ConversationLease.__table__.c.conversation_id == conversation_id))  # type: ignore[attr-defined]
            connection.execute(calls.update().where(
                calls.c.conversation_id == conversation_id, calls.c.status == str(CallStatus.PROPOSED),
            ).values(status=str(CallStatus.SKIPPED), reject_reason=_DELETED_REASON, finished_at=now))
            connection.execute(Message.__table__.delete().where(  # type: ignore[attr-defined]
                Message.__table__.c.conversation_id == conversation_id))  # type: ignore[attr-defined]
            connection.execute(Conversation.__table__.update().where(  # type: ignore[attr-defined]
                Conversation.__table__.c.id == conversation_id).values(deleted_at=now))  # type: ignore[attr-defined]

    def purge_older_than(self, cutoff: datetime) -> int:
        """Delete conversations last changed before `cutoff`, with their messages and calls' audit rows; how many."""
        conversations = Conversation.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as connection:
            old = select(conversations.c.id).where(conversations.c.updated_at < cutoff)
            for table in (ConversationLease, Message, FunctionCallRecord):
                column = table.__table__.c.conversation_id  # type: ignore[attr-defined]
                connection.execute(table.__table__.delete().where(column.in_(old)))  # type: ignore[attr-defined]
            purged = connection.execute(conversations.delete().where(conversations.c.updated_at < cutoff)).rowcount
        return int(purged or 0)

    # Messages

    def add_message(
        self, *, conversation_id: str, role: MessageRole, content: str, call_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Message:
        """Append a message at the end of the conversation (and mark the conversation as updated)."""
        with self.engine.begin() as connection:  # Core, not an ORM session: a message is appended on every turn
            return self._append_message(connection, conversation_id, role, content, call_id, extra)

    def _append_message(
        self, session: Session | Connection, conversation_id: str, role: MessageRole, content: str, call_id: str | None,
        extra: dict[str, Any] | None,
    ) -> Message:
        """Insert at the next position; concurrent appends to one conversation queue up instead of colliding."""
        now = utcnow()
        # Touching the conversation first takes its row lock (PostgreSQL) or the write lock (SQLite), so the
        # max(position) read by the insert below cannot be read by another append at the same time.
        session.execute(_TOUCH_CONVERSATION, {"cid": conversation_id, "now": now})
        row = session.execute(
            _APPEND_MESSAGE,
            {"cid": conversation_id, "role": str(role), "content": content, "call_id": call_id, "extra": extra, "now": now},
        ).one()
        return Message(
            id=row.id, conversation_id=conversation_id, position=row.position, role=str(role), content=content,
            call_id=call_id, extra=extra, created_at=now,
        )

    def delete_tail(self, conversation_id: str, *, from_position: int, count: int) -> None:
        """Delete the last `count` messages, which start at `from_position`; InvalidStateError if others came since.

        Only the tail goes, so positions stay gap-free and the next append takes the first free one again.
        """
        table = Message.__table__  # type: ignore[attr-defined]
        tail = table.c.conversation_id == conversation_id, table.c.position >= from_position
        with self.engine.begin() as connection:
            # Touching the conversation takes the same lock an append takes: no message can slip in between.
            connection.execute(_TOUCH_CONVERSATION, {"cid": conversation_id, "now": utcnow()})
            found = connection.execute(select(func.count()).select_from(table).where(*tail)).scalar_one()
            if found != count:
                raise InvalidStateError("The conversation has changed in the meantime: reload it and try again.")
            connection.execute(table.delete().where(*tail))

    def messages(self, conversation_id: str) -> list[Message]:
        with self.session() as session:
            statement = select(Message).where(Message.conversation_id == conversation_id).order_by(Message.position)  # type: ignore[arg-type]
            return list(session.exec(statement))

    def transcript(
        self, conversation_id: str,
    ) -> list[tuple[str, str, str | None, str | None, dict[str, Any] | None, int]]:
        """(role, content, call id, function name, arguments as run or proposed, message id) per message, oldest
        first, in one query.

        The prompt is rebuilt from this on every reply, so it reads plain rows rather than ORM objects.
        """
        messages = Message.__table__  # type: ignore[attr-defined]
        calls = FunctionCallRecord.__table__  # type: ignore[attr-defined]
        statement = (
            select(
                messages.c.role, messages.c.content, messages.c.call_id, calls.c.function_name,
                func.coalesce(calls.c.final_arguments, calls.c.proposed_arguments), messages.c.id,
            )
            .select_from(messages.outerjoin(calls, calls.c.id == messages.c.call_id))
            .where(messages.c.conversation_id == conversation_id)
            .order_by(messages.c.position)
        )
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(statement)]  # type: ignore[misc]

    # Function calls

    def add_call(
        self, record: FunctionCallRecord, *, message_content: str, result_message: str | None = None,
    ) -> FunctionCallRecord:
        """Store a call with its function_call message (and, for one settled at once, its result) in one transaction."""
        with self.session() as session:
            session.add(record)
            session.flush()
            self._append_message(session, record.conversation_id, MessageRole.FUNCTION_CALL, message_content, record.id, None)
            if result_message is not None:
                self._append_message(
                    session, record.conversation_id, MessageRole.FUNCTION_RESULT, result_message, record.id, None,
                )
            session.commit()
            return record

    def call(self, call_id: str) -> FunctionCallRecord:
        record = self._one(_CALL_BY_ID, {"id": call_id}, FunctionCallRecord)
        if record is None:
            raise NotFoundError("This function call does not exist, or it is not yours.")
        return record

    def calls(
        self, *, conversation_id: str | None = None, reply_id: str | None = None, turn_id: str | None = None,
        status: CallStatus | None = None,
    ) -> list[FunctionCallRecord]:
        """Calls matching every filter given, oldest first."""
        filters = {"conversation_id": conversation_id, "reply_id": reply_id, "turn_id": turn_id, "status": status}
        given = tuple(sorted(key for key, value in filters.items() if value is not None))
        statement = _CALLS_BY.get(given)
        if statement is None:
            raise ValueError(f"No call query for filters {given}.")
        with self.engine.connect() as connection:
            rows = connection.execute(statement, {key: filters[key] for key in given})
            return [_from_row(FunctionCallRecord, row) for row in rows]

    def _one(self, statement: Any, params: dict[str, Any], model: type[SQLModel]) -> Any:
        """One row of a prebuilt Core statement as a model (plain rows: ORM loading costs more than SQLite)."""
        with self.engine.connect() as connection:
            row = connection.execute(statement, params).first()
        return None if row is None else _from_row(model, row)

    def transition(
        self, call_id: str, *, expected: set[CallStatus] | CallStatus, to: CallStatus, result_message: str | None = None,
        **changes: Any,
    ) -> FunctionCallRecord:
        """Move a call from `expected` to `to` and append `result_message`, in one transaction; else InvalidStateError."""
        allowed = {expected} if isinstance(expected, CallStatus) else expected
        table = FunctionCallRecord.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as connection:
            row = connection.execute(
                table.update()
                .where(table.c.id == call_id, table.c.status.in_([str(s) for s in allowed]))
                .values(status=str(to), **changes)
                .returning(*table.c)
            ).first()  # one statement: the compare-and-set and the read-back cannot be interleaved
            if row is not None and result_message is not None:
                self._append_message(
                    connection, row.conversation_id, MessageRole.FUNCTION_RESULT, result_message, call_id, None,
                )
        if row is not None:
            return _from_row(FunctionCallRecord, row)
        current = self.call(call_id)
        raise InvalidStateError(f"This call is already {current.status}; it cannot become {to}.")

    # Reply leases: one reply at a time per conversation, across every replica sharing the database. Expiry times
    # come from each replica's clock, so replicas need clocks that agree to well within a lease's length.

    def take_lease(self, conversation_id: str, *, holder: str, ttl: timedelta) -> bool:
        """Hold the conversation for `ttl` if no one holds it or their lease expired (one compare-and-set); else False."""
        now = utcnow()
        with self.engine.begin() as connection:
            taken = connection.execute(
                self._take_lease, {"cid": conversation_id, "who": holder, "until": now + ttl, "now": now}
            ).rowcount
        return taken == 1

    def renew_lease(self, conversation_id: str, *, holder: str, ttl: timedelta) -> bool:
        """Extend `holder`'s lease to `ttl` from now; False if it is no longer theirs (it expired and was taken)."""
        with self.engine.begin() as connection:
            renewed = connection.execute(
                _RENEW_LEASE, {"cid": conversation_id, "who": holder, "until": utcnow() + ttl}
            ).rowcount
        return renewed == 1

    def release_lease(self, conversation_id: str, *, holder: str) -> None:
        """Give the conversation up, if `holder` still holds it."""
        with self.engine.begin() as connection:
            connection.execute(_RELEASE_LEASE, {"cid": conversation_id, "who": holder})

    def lease_holder(self, conversation_id: str) -> str | None:
        """Who holds the conversation's unexpired lease, or None when it is free."""
        with self.engine.connect() as connection:
            return connection.execute(_LEASE_HOLDER, {"cid": conversation_id, "now": utcnow()}).scalar()

    def interrupt_unfinished_calls(self) -> list[FunctionCallRecord]:
        """Mark calls this instance left confirmed or running (or any orphaned for over an hour) as interrupted.

        Called at start-up and at shutdown. They are never re-run: a person checks their effect first. Other
        replicas' calls that are still within their time limit are left alone.
        """
        table = FunctionCallRecord.__table__  # type: ignore[attr-defined]
        orphaned_before = utcnow() - _LONGEST_CALL
        statement = select(table.c.id, table.c.status).where(
            table.c.status.in_([str(CallStatus.CONFIRMED), str(CallStatus.RUNNING)]),
            (table.c.runner == self.instance) | table.c.runner.is_(None) | (table.c.confirmed_at < orphaned_before),
        )
        with self.engine.connect() as connection:
            stuck = [(row.id, row.status) for row in connection.execute(statement)]
        interrupted = []
        for call_id, status in stuck:
            # A call still `confirmed` never reached its function; a `running` one may have acted.
            reason = _NEVER_STARTED if status == CallStatus.CONFIRMED else _STOPPED_RUNNING
            try:
                interrupted.append(self.transition(
                    call_id, expected=CallStatus(status), to=CallStatus.INTERRUPTED, finished_at=utcnow(), error=reason,
                    # The model reads this like any settled call's result, in the same transaction as the status.
                    result_message=json.dumps({"error": reason}),
                ))
            except InvalidStateError:
                continue
        return interrupted

    def audit(
        self, *, status: str | None = None, function: str | None = None, user_name: str | None = None,
        owner: User | None = None, limit: int = 1000,
    ) -> list[tuple[FunctionCallRecord, Conversation, User]]:
        """Calls with their conversation and owner, newest first; `owner` restricts to one user's conversations."""
        with self.session() as session:
            statement = (
                select(FunctionCallRecord, Conversation, User)
                .join(Conversation, Conversation.id == FunctionCallRecord.conversation_id)  # type: ignore[arg-type]
                .join(User, User.id == Conversation.owner_id)  # type: ignore[arg-type]
            )
            if status:
                statement = statement.where(FunctionCallRecord.status == status)
            if function:
                statement = statement.where(FunctionCallRecord.function_name == function)
            if user_name:
                statement = statement.where(User.name == user_name)
            if owner is not None:
                statement = statement.where(Conversation.owner_id == owner.id)
            statement = statement.order_by(FunctionCallRecord.created_at.desc()).limit(limit)  # type: ignore[attr-defined]
            return list(session.exec(statement))


def _from_row(model: type[_Model], row: Any) -> _Model:
    """A model from a row the database already checked: skipping validation makes this 10x cheaper (0.01 ms)."""
    return model.model_construct(**row._mapping)


def _append_message_statement() -> Any:
    """Built once: statement construction costs more than SQLite's own work for a small insert."""
    table = Message.__table__  # type: ignore[attr-defined]
    next_position = (
        select(func.coalesce(func.max(table.c.position), -1) + 1)
        .where(table.c.conversation_id == bindparam("cid"))
        .scalar_subquery()
    )
    return (
        table.insert()
        .values(
            conversation_id=bindparam("cid"), position=next_position, role=bindparam("role"),
            content=bindparam("content"), call_id=bindparam("call_id"), extra=bindparam("extra", type_=table.c.extra.type),
            created_at=bindparam("now", type_=table.c.created_at.type),
        )
        .returning(table.c.id, table.c.position)
    )


_APPEND_MESSAGE = _append_message_statement()
_USER_BY_NAME = select(User.__table__).where(User.__table__.c.name == bindparam("name"))  # type: ignore[attr-defined]
_STOPPED_RUNNING = (
    "Callcard stopped while this call was running; it was not re-run. Check its effect before trying again."
)
_NEVER_STARTED = "Callcard stopped after this call was confirmed but before it started; it did not run."
_DELETED_REASON = "The conversation was deleted before this call was confirmed; it did not run."
_CONVERSATION_BY_ID = select(Conversation.__table__).where(Conversation.__table__.c.id == bindparam("id"))  # type: ignore[attr-defined]
_CALL_BY_ID = select(FunctionCallRecord.__table__).where(FunctionCallRecord.__table__.c.id == bindparam("id"))  # type: ignore[attr-defined]


def _calls_statement(*filters: str) -> Any:
    table = FunctionCallRecord.__table__  # type: ignore[attr-defined]
    statement = select(table).where(*(table.c[name] == bindparam(name) for name in filters))
    return statement.order_by(table.c.created_at, table.c.id)


_CALLS_BY = {
    filters: _calls_statement(*filters)
    for filters in [
        ("conversation_id",), ("reply_id",), ("conversation_id", "turn_id"), ("conversation_id", "status"), (),
    ]
}

def _take_lease_statement(insert: Any) -> Any:
    """Insert the lease, or take over an expired one: the WHERE makes the upsert a compare-and-set (rowcount 0 or 1)."""
    table = ConversationLease.__table__  # type: ignore[attr-defined]
    statement = insert(table).values(
        conversation_id=bindparam("cid"), holder=bindparam("who"),
        expires_at=bindparam("until", type_=table.c.expires_at.type),
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.conversation_id],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=table.c.expires_at < bindparam("now", type_=table.c.expires_at.type),
    ).execution_options(preserve_rowcount=True)  # SQLAlchemy keeps an INSERT's rowcount only when asked


# Upserts are spelled per dialect in SQLAlchemy; these two are the databases Callcard runs on.
_TAKE_LEASE = {"sqlite": _take_lease_statement(sqlite.insert), "postgresql": _take_lease_statement(postgresql.insert)}
_LEASES = ConversationLease.__table__  # type: ignore[attr-defined]
_RENEW_LEASE = (
    _LEASES.update()
    .where(_LEASES.c.conversation_id == bindparam("cid"), _LEASES.c.holder == bindparam("who"))
    .values(expires_at=bindparam("until", type_=_LEASES.c.expires_at.type))
)
_RELEASE_LEASE = _LEASES.delete().where(
    _LEASES.c.conversation_id == bindparam("cid"), _LEASES.c.holder == bindparam("who"),
)
_LEASE_HOLDER = select(_LEASES.c.holder).where(
    _LEASES.c.conversation_id == bindparam("cid"),
    _LEASES.c.expires_at >= bindparam("now", type_=_LEASES.c.expires_at.type),
)
_TOUCH_CONVERSATION = (
    Conversation.__table__.update()  # type: ignore[attr-defined]
    .where(Conversation.__table__.c.id == bindparam("cid"))  # type: ignore[attr-defined]
    .values(updated_at=bindparam("now", type_=Conversation.__table__.c.updated_at.type))  # type: ignore[attr-defined]
)
