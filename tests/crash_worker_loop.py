"""The process `tests/crash_harness.py` kills: starts as Callcard does, then runs scripted operations until killed.

One life: open the Store, mark the calls a previous life left unfinished as interrupted (what app.py does at
start-up), print `ready`, wait for `go <seed> <focus>` on stdin, then loop over operations a person does (create,
send, confirm with or without edits, reject, retry, export and import, delete, take back a message, try to confirm
a settled call again) chosen by a seeded RNG, with `focus` preferred so the harness can aim its kills.

What it tells the harness, on stdout (no buffering, so a SIGKILL loses nothing already written): `pid N`,
`step NAME` whenever it enters a step (the last one before a kill says where the kill landed), `ready N`,
`did OP OUTCOME`. What a person was told happened goes to `acks.log`, fsync'd: `confirmed CALL CONV` once the card
shows the call running, `succeeded`/`failed`/`rejected CALL CONV`, `sent CONV TEXT`, `created`/`imported`/`deleted
CONV`, `withdrew CONV TEXT`, and the intents `deleting CONV` and `withdrawing CONV` written before those operations.
The tool appends its unique order number to `effects.log`, fsync'd, before it returns.

`python -m tests.crash_worker_loop life CONFIG_JSON` runs one life in a fresh interpreter; `... zygote` imports
everything once and forks a life for each `spawn CONFIG_JSON` line on stdin (see `_zygote` for why that is safe).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from backend.engine import Engine
from backend.engine.events import (
    CallProposed,
    CallUpdated,
    Done,
    EngineEvent,
    ErrorEvent,
    PreparingCall,
    ReplyText,
    Token,
)
from backend.errors import CallcardError
from backend.models.protocol import GenerationParams
from backend.models.tgi import TGIBackend
from backend.storage.store import Store
from backend.storage.tables import CallStatus, Conversation, FunctionCallRecord, MessageRole
from backend.tools import ToolFailure, ToolRegistry, tool_from_function

__all__ = ["OPERATIONS", "TOOL_NAME", "USER", "LifeConfig", "main"]

log = logging.getLogger(__name__)

USER = "ann"
TOOL_NAME = "cancel_order"
OPERATIONS = ("create", "send", "confirm", "reject", "retry", "import", "delete", "withdraw", "reconfirm")
# How often each operation is picked when it is not the focus: sending and confirming are most of a day's work.
_WEIGHTS = {
    "create": 2, "send": 10, "confirm": 8, "reject": 3, "retry": 3, "import": 2, "delete": 2, "withdraw": 2,
    "reconfirm": 1,
}
_RECENT = 8  # operations pick among the newest conversations, so conversations get several turns
_MAX_MESSAGES = 14  # a longer conversation gets no more messages: the fake server's prompt limit stays far away
# A dead life's reply lease blocks its conversation until it expires; 5 s instead of the app's 60 s keeps most
# conversations usable across the quick restarts here (the lease's own behaviour is tested elsewhere).
_REPLY_LEASE = timedelta(seconds=5)


@dataclass(frozen=True)
class LifeConfig:
    """What one life needs: where the store, the model server and the harness's files are, and its number."""

    database: str
    model_url: str
    folder: str
    life: int

    @classmethod
    def from_json(cls, text: str) -> LifeConfig:
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


class _Journal:
    """The worker's reports: steps and outcomes on stdout, acknowledgements and side effects fsync'd to files."""

    def __init__(self, folder: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._acks = os.open(folder / "acks.log", flags, 0o644)
        self._effects = os.open(folder / "effects.log", flags, 0o644)
        self.step_now = ""

    def say(self, line: str) -> None:
        os.write(1, (line + "\n").encode())  # one write: a line is whole or absent after a kill

    def step(self, name: str) -> None:
        if name != self.step_now:
            self.step_now = name
            self.say(f"step {name}")

    def ack(self, *fields: str) -> None:
        self._durable(self._acks, " ".join(fields))

    def effect(self, order_number: str) -> None:
        self._durable(self._effects, order_number)

    @staticmethod
    def _durable(fd: int, line: str) -> None:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)


class _CancelTool:
    """The tool people confirm: it records its (unique) order number durably before returning, sometimes fails."""

    def __init__(self, journal: _Journal, seed: int) -> None:
        self.journal = journal
        self.rng = random.Random(seed)

    def cancel_order(self, order_number: str, reason: str = "customer asked") -> dict[str, str]:
        """Cancel an order.

        Args:
            order_number: The order to cancel, e.g. K1001.
            reason: Why it is cancelled.
        """
        self.journal.step("tool")
        fails = self.rng.random() < 0.15
        time.sleep(self.rng.uniform(0, 0.03))  # a real tool takes a while: kills land inside it
        if fails:
            raise ToolFailure(f"The order system refused to cancel {order_number}.")
        self.journal.effect(order_number)
        self.journal.step("tool-effect")
        time.sleep(self.rng.uniform(0, 0.03))  # acted, not yet settled: the window interruption is for
        return {"order_number": order_number, "cancelled": "yes"}


class _Life:
    """One run of the worker between two kills."""

    def __init__(self, config: LifeConfig, journal: _Journal) -> None:
        self.config = config
        self.journal = journal
        journal.step("recover")
        self.store = Store(config.database)  # same instance name every life: the host's, as the app has
        interrupted = self.store.interrupt_unfinished_calls()
        self.tool = _CancelTool(journal, config.life)
        registry = ToolRegistry([tool_from_function(self.tool.cancel_order, source="crash harness")])
        self.engine = Engine(
            store=self.store, backend=TGIBackend(config.model_url, call_mode="parse", retries=0, timeout=10),
            registry=registry, params=GenerationParams(max_new_tokens=128), reply_lease=_REPLY_LEASE,
        )
        self.rng = random.Random(config.life)
        self.focus = "mix"
        self.count = 0
        journal.step("ready")
        journal.say(f"ready {len(interrupted)}")

    def tag(self) -> str:
        """A name no other operation of any life uses."""
        self.count += 1
        return f"L{self.config.life}.{self.count}"

    async def run(self) -> None:
        seed, self.focus = _read_line().split()[1:3]
        self.rng = random.Random(int(seed))
        operations: dict[str, Callable[[], Awaitable[str]]] = {
            "create": self.create, "send": self.send, "confirm": self.confirm, "reject": self.reject,
            "retry": self.retry, "import": self.import_one, "delete": self.delete, "withdraw": self.withdraw,
            "reconfirm": self.reconfirm,
        }
        while True:  # until killed
            if self.focus in operations and self.rng.random() < 0.6:
                name = self.focus
            else:
                name = self.rng.choices(list(_WEIGHTS), list(_WEIGHTS.values()))[0]
            self.journal.step("pick")
            try:
                outcome = await operations[name]()
            except CallcardError as error:  # refused as a person would be refused (deleted, moved on...)
                outcome = f"refused:{type(error).__name__}"
            self.journal.say(f"did {name} {outcome}")

    # Picking what to act on

    def conversations(self) -> list[Conversation]:
        return self.engine.list_conversations(USER)[:_RECENT]

    def open_conversation(self) -> Conversation | None:
        """A recent conversation with room for another turn and no reply in progress."""
        choices = [
            c for c in self.conversations()
            if self.store.lease_holder(c.id) is None and len(self.store.messages(c.id)) < _MAX_MESSAGES
        ]
        return self.rng.choice(choices) if choices else None

    def calls(self, *statuses: CallStatus) -> list[tuple[FunctionCallRecord, Conversation]]:
        found = []
        for conversation in self.conversations():
            for record in self.store.calls(conversation_id=conversation.id):
                if record.status in statuses and record.function_name == TOOL_NAME:
                    found.append((record, conversation))
        return found

    # Operations: each returns its outcome in a word

    async def create(self) -> str:
        self.journal.step("create")
        conversation = self.engine.create_conversation(USER)
        self.journal.ack("created", conversation.id)
        return "ok"

    async def send(self) -> str:
        conversation = self.open_conversation()
        if conversation is None:
            return await self.create()
        text = f"{self.tag()} please cancel my order"
        self.journal.step("send")
        return await self._follow(self.engine.send(conversation.id, USER, text), conversation.id, sent=text)

    async def confirm(self) -> str:
        waiting = self.calls(CallStatus.PROPOSED)
        if not waiting:
            return await self.send()  # a call to confirm comes from a reply
        record, conversation = self.rng.choice(waiting)
        proposed = dict(record.proposed_arguments or {})
        arguments: dict[str, Any] | None = None
        # A copy made by an import shares its order number with the original: an edit keeps side effects matched.
        copied = record.created_at < conversation.created_at
        if copied or "order_number" not in proposed or self.rng.random() < 0.35:
            arguments = {**proposed, "order_number": f"{proposed.get('order_number', 'X')}-E{self.tag()}"}
        self.journal.step("confirm")
        return await self._follow(self.engine.confirm(record.id, arguments, USER), conversation.id)

    async def reject(self) -> str:
        waiting = self.calls(CallStatus.PROPOSED)
        if not waiting:
            return await self.send()
        record, conversation = self.rng.choice(waiting)
        self.journal.step("reject")
        return await self._follow(self.engine.reject(record.id, USER, "not this one"), conversation.id)

    async def retry(self) -> str:
        for conversation in self.conversations():
            messages = [m for m in self.store.messages(conversation.id) if m.role != MessageRole.ERROR]
            if (
                messages and messages[-1].role in (MessageRole.USER, MessageRole.FUNCTION_RESULT)
                and self.store.lease_holder(conversation.id) is None
                and not self.store.calls(conversation_id=conversation.id, status=CallStatus.PROPOSED)
            ):
                self.journal.step("retry")
                return await self._follow(self.engine.retry(conversation.id, USER), conversation.id)
        return await self.send()  # a failed reply is what a retry needs

    async def import_one(self) -> str:
        choices = self.conversations()
        if not choices:
            return await self.create()
        conversation = self.rng.choice(choices)
        self.journal.step("export")
        data = json.loads(json.dumps(self.engine.export_conversation(conversation.id, USER)))  # as a file would
        self.journal.step("import")
        imported = self.engine.import_conversation(data, USER)
        self.journal.ack("imported", imported.id)
        return "ok"

    async def delete(self) -> str:
        choices = self.engine.list_conversations(USER)
        if len(choices) < 3:
            return await self.create()  # keep a few: the newest ones are where the work goes on
        conversation = self.rng.choice(choices[len(choices) // 2:])  # the older half: recent ones get turns
        self.journal.ack("deleting", conversation.id)
        self.journal.step("delete")
        self.engine.delete_conversation(conversation.id, USER)
        self.journal.ack("deleted", conversation.id)
        return "ok"

    async def withdraw(self) -> str:
        for conversation in self.conversations():
            roles = [m.role for m in self.store.messages(conversation.id) if m.role != MessageRole.ERROR]
            if roles and roles[-1] == MessageRole.USER and self.store.lease_holder(conversation.id) is None:
                self.journal.ack("withdrawing", conversation.id)
                self.journal.step("withdraw")
                text = self.engine.withdraw_unanswered(conversation.id, USER)
                self.journal.ack("withdrew", conversation.id, text)
                return "ok"
        return await self.send()  # an unanswered message comes from a failed reply

    async def reconfirm(self) -> str:
        """Confirm a call that already settled, as a stale card would: it must be refused and never run again."""
        settled = self.calls(CallStatus.INTERRUPTED) or self.calls(CallStatus.SUCCEEDED, CallStatus.FAILED)
        if not settled:
            return await self.confirm()  # a settled call comes from a confirmed one
        record, conversation = self.rng.choice(settled)
        self.journal.step("reconfirm")
        return await self._follow(self.engine.confirm(record.id, None, USER), conversation.id)

    async def _follow(self, events: AsyncIterator[EngineEvent], conversation_id: str, *, sent: str | None = None) -> str:
        """Consume the engine's events as the UI does, noting each step and acknowledging what the person sees."""
        outcome = "ok"
        async for event in events:
            if sent is not None:  # the engine stores the message before it reports anything
                self.journal.ack("sent", conversation_id, sent)
                sent = None
            if isinstance(event, Token):
                self.journal.step("stream")
            elif isinstance(event, PreparingCall):
                self.journal.step("call-stream")
            elif isinstance(event, ReplyText):
                self.journal.step("reply-stored")
            elif isinstance(event, CallProposed):
                self.journal.step("proposed")
            elif isinstance(event, CallUpdated):
                status = event.call.status
                if status == CallStatus.RUNNING:
                    self.journal.ack("confirmed", event.call.id, conversation_id)
                    self.journal.step("running")
                elif status in (CallStatus.SUCCEEDED, CallStatus.FAILED, CallStatus.REJECTED):
                    self.journal.ack(str(status), event.call.id, conversation_id)
                    self.journal.step("settled" if status != CallStatus.REJECTED else "rejected")
            elif isinstance(event, ErrorEvent):
                outcome = "error"
                self.journal.step("error")
            elif isinstance(event, Done):
                self.journal.step("done")
        return outcome


def _read_line() -> str:
    """One line from stdin, read a byte at a time: nothing meant for the zygote or a later life is read ahead."""
    data = bytearray()
    while not data.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            raise SystemExit(0)  # the harness went away
        data += byte
    return data.decode().strip()


def _run_life(config: LifeConfig) -> None:
    journal = _Journal(Path(config.folder))
    journal.say(f"pid {os.getpid()}")
    life = _Life(config, journal)
    asyncio.run(life.run())


def _zygote() -> None:
    """Fork a life per `spawn` line: the imports (1-2 s) are paid once instead of at every restart.

    Safe because the zygote holds nothing a child could share by accident: it only imported modules (no thread
    running, checked before each fork; no database connection, socket or event loop yet), and each child opens its
    own Store, model client and event loop, then ends with os._exit. It waits for each child, so at most one life
    runs at a time and none is left a zombie, and it reports how the child ended.
    """
    import psycopg  # noqa: F401  (the PostgreSQL driver's import, paid here too)

    while True:
        line = _read_line()
        if not line.startswith("spawn "):
            continue
        if threading.active_count() != 1:
            raise RuntimeError("the zygote has a thread running; forking it would be unsafe")
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run_life(LifeConfig.from_json(line.removeprefix("spawn ")))
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            except Exception:
                log.exception("life failed")  # to stderr: the harness's worker-stderr.log
                code = 1
            finally:  # whatever happened, the child never returns into the zygote's loop
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        os.write(1, f"exited {pid} {os.waitstatus_to_exitcode(status)}\n".encode())


def main(argv: list[str]) -> None:
    if argv[:1] == ["zygote"]:
        _zygote()
    elif argv[:1] == ["life"] and len(argv) == 2:
        _run_life(LifeConfig.from_json(argv[1]))
    else:
        raise SystemExit("usage: python -m tests.crash_worker_loop zygote | life CONFIG_JSON")


if __name__ == "__main__":
    main(sys.argv[1:])
