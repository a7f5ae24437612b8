"""The migrations: a database they make has exactly the tables the models declare, and an old one catches up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlmodel import SQLModel

from backend.storage.database import create_database_engine
from backend.storage.migrations import MIGRATIONS
from backend.storage.store import Store
from backend.storage.tables import Conversation, ConversationLease, FunctionCallRecord, Message, SchemaMigration, User

_MODELS = (User, Conversation, Message, FunctionCallRecord, ConversationLease, SchemaMigration)


@pytest.fixture(params=["sqlite", "postgresql"])
def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Two empty databases of one kind: SQLite files, or (second run) fresh PostgreSQL databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'declared.db'}"
    server = request.getfixturevalue("postgres")
    return server.new_database(), server.new_database()


def _schema(engine: Engine) -> dict[str, Any]:
    """Every table with its columns, keys, indexes and constraints, as the database reports them."""
    found = inspect(engine)
    schema: dict[str, Any] = {}
    for table in sorted(found.get_table_names()):
        columns = {c["name"]: {**c, "type": repr(c["type"])} for c in found.get_columns(table)}
        schema[table] = {
            "columns": columns,
            "primary key": found.get_pk_constraint(table)["constrained_columns"],
            "foreign keys": sorted(
                (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"], fk["options"])
                for fk in found.get_foreign_keys(table)
            ),
            "indexes": sorted((ix["name"], ix["column_names"], ix["unique"]) for ix in found.get_indexes(table)),
            "unique": sorted(uc["column_names"] for uc in found.get_unique_constraints(table)),
        }
    return schema


def test_the_migrations_make_exactly_the_tables_the_models_declare(two_databases: tuple[str, str]) -> None:
    migrated_url, declared_url = two_databases
    store = Store(migrated_url)
    declared = create_database_engine(declared_url)
    SQLModel.metadata.create_all(declared, tables=[model.__table__ for model in _MODELS])  # type: ignore[attr-defined]

    assert _schema(store.engine) == _schema(declared)
    store.close()
    declared.dispose()


def test_the_first_migration_is_the_schema_as_it_shipped(tmp_path: Path) -> None:
    """001 does not follow the models: calls had no runner until 002."""
    engine = create_database_engine(f"sqlite:///{tmp_path / 'first.db'}")
    with engine.begin() as connection:
        dict(MIGRATIONS)["001_initial"](connection)
    assert "runner" not in {c["name"] for c in inspect(engine).get_columns("function_calls")}
    assert sorted(inspect(engine).get_table_names()) == ["conversations", "function_calls", "messages", "users"]
    engine.dispose()


def test_an_old_database_is_migrated_and_a_new_one_goes_the_same_way(tmp_path) -> None:
    path = tmp_path / "old.db"
    old = create_engine(f"sqlite:///{path}")
    with old.begin() as connection:  # the schema as 001 shipped it, before calls recorded their runner
        connection.execute(text("CREATE TABLE schema_migrations (name VARCHAR(200) PRIMARY KEY, applied_at DATETIME)"))
        connection.execute(text("INSERT INTO schema_migrations VALUES ('001_initial', '2026-11-01')"))
        dict(MIGRATIONS)["001_initial"](connection)
    old.dispose()

    migrated = Store(f"sqlite:///{path}")
    fresh = Store(f"sqlite:///{tmp_path / 'new.db'}")

    assert migrated.apply_migrations() == [] and fresh.apply_migrations() == []
    with migrated.engine.connect() as connection:
        names = list(connection.execute(text("SELECT name FROM schema_migrations ORDER BY name")).scalars())
    assert names == [name for name, _ in MIGRATIONS]
    columns = {c["name"] for c in __import__("sqlalchemy").inspect(migrated.engine).get_columns("function_calls")}
    assert "runner" in columns
