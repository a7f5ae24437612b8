"""Ordered, named migrations, applied at start-up so a new database and an old one go through the same path."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    text,
)

from backend.storage.tables import SchemaMigration, utcnow

__all__ = ["MIGRATIONS", "apply_migrations"]

log = logging.getLogger(__name__)


def _m001_initial(connection: Connection) -> None:
    """The schema as it first shipped, spelled out: later changes to the tables go in later migrations."""
    metadata = MetaData()
    Table(
        "users", metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(200), nullable=False),
        Column("role", String(20), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Index("ix_users_name", "name", unique=True),
    )
    Table(
        "conversations", metadata,
        Column("id", String(32), primary_key=True),
        Column("owner_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        Column("title", String(200), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("model_id", String(300)),
        Column("prompt_style", String(40)),
        Column("system_prompt", Text),
        Column("temperature", Float),
        Column("max_new_tokens", Integer),
        Index("ix_conversations_owner_id", "owner_id"),
        Index("ix_conversations_updated_at", "updated_at"),
    )
    Table(
        "messages", metadata,
        Column("id", Integer, primary_key=True),
        Column("conversation_id", String(32), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
        Column("position", Integer, nullable=False),
        Column("role", String(20), nullable=False),
        Column("content", Text, nullable=False),
        Column("call_id", String(32)),
        Column("extra", JSON),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("conversation_id", "position"),
        Index("ix_messages_conversation_id", "conversation_id"),
    )
    Table(
        "function_calls", metadata,
        Column("id", String(32), primary_key=True),
        Column("conversation_id", String(32), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
        Column("reply_id", String(32), nullable=False),
        Column("turn_id", String(32), nullable=False),
        Column("function_name", String(200), nullable=False),
        Column("proposed_arguments", JSON),
        Column("edited_arguments", JSON),
        Column("final_arguments", JSON),
        Column("validation_errors", JSON),
        Column("status", String(20), nullable=False),
        Column("auto", Boolean, nullable=False),
        Column("result", JSON),
        Column("error", Text),
        Column("reject_reason", Text),
        Column("confirmed_by", Integer, ForeignKey("users.id", ondelete="SET NULL")),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("confirmed_at", DateTime(timezone=True)),
        Column("started_at", DateTime(timezone=True)),
        Column("finished_at", DateTime(timezone=True)),
        Column("duration_ms", Float),
        Index("ix_function_calls_conversation_id", "conversation_id"),
        Index("ix_function_calls_created_at", "created_at"),
        Index("ix_function_calls_function_name", "function_name"),
        Index("ix_function_calls_reply_id", "reply_id"),
        Index("ix_function_calls_status", "status"),
    )
    metadata.create_all(connection)


def _m002_call_runner(connection: Connection) -> None:
    """Which instance confirmed a call, so a restarting replica only interrupts its own calls."""
    # Databases made while 001 created the tables as the models then stood already have the column.
    if "runner" not in {c["name"] for c in inspect(connection).get_columns("function_calls")}:
        connection.execute(text("ALTER TABLE function_calls ADD COLUMN runner VARCHAR(200)"))


def _m003_conversation_leases(connection: Connection) -> None:
    """A lease per conversation, so that only one reply streams in it at a time across replicas."""
    metadata = MetaData()
    Table("conversations", metadata, Column("id", String(32), primary_key=True))  # only for the foreign key
    Table(
        "conversation_leases", metadata,
        Column(
            "conversation_id", String(32), ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True,
        ),
        Column("holder", String(200), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )
    metadata.tables["conversation_leases"].create(connection)


def _m004_audit_history(connection: Connection) -> None:
    """A deleted conversation keeps its row (and so its calls' audit rows); an imported call says where it came from."""
    connection.execute(text("ALTER TABLE conversations ADD COLUMN deleted_at TIMESTAMP WITH TIME ZONE"
                            if connection.dialect.name == "postgresql" else
                            "ALTER TABLE conversations ADD COLUMN deleted_at DATETIME"))
    connection.execute(text("ALTER TABLE function_calls ADD COLUMN imported_from VARCHAR(300)"))


def _m005_call_provenance(connection: Connection) -> None:
    """Where each argument value came from, and the source of the tool that was proposed."""
    connection.execute(text("ALTER TABLE function_calls ADD COLUMN provenance JSON"))
    connection.execute(text("ALTER TABLE function_calls ADD COLUMN tool_source VARCHAR(200)"))


# Ordered and named; never edit or reorder one that has shipped, append a new one instead. Each must leave a new and an
# old database in the same state: a test compares a database made by these with the tables the models declare.
MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("001_initial", _m001_initial),
    ("002_call_runner", _m002_call_runner),
    ("003_conversation_leases", _m003_conversation_leases),
    ("004_audit_history", _m004_audit_history),
    ("005_call_provenance", _m005_call_provenance),
]


def apply_migrations(engine: Engine) -> list[str]:
    """Apply the migrations this database has not seen yet, in order, in one transaction; returns their names."""
    applied_now: list[str] = []
    with engine.begin() as connection:
        SchemaMigration.__table__.create(connection, checkfirst=True)  # type: ignore[attr-defined]
        done = set(connection.execute(select(SchemaMigration.name)).scalars())
        for name, migrate in MIGRATIONS:
            if name in done:
                continue
            log.info("applying migration %s", name)
            migrate(connection)
            connection.execute(SchemaMigration.__table__.insert().values(name=name, applied_at=utcnow()))  # type: ignore[attr-defined]
            applied_now.append(name)
    return applied_now
