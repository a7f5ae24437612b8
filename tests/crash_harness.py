"""Random SIGKILLs while scripted conversations run, a restart after each, and the store's invariants checked.

Used by `tests/backend/engine/test_crash_harness.py` (a few kills) and `bench/bench_crash.py` (200). The fake TGI
server runs here and survives every kill; the worker (`tests/crash_worker_loop.py`) is a forked child of a zygote
that imported Callcard once (or, with `start="spawn"`, a fresh interpreter each time). Each life: the worker opens
the store and interrupts what the last life left unfinished, as app.py does at start-up, and says `ready`; the
store is checked then, while the worker waits; then it runs operations aimed at one step (or anything) and is
killed a seeded random moment after it enters that step (within the step's median length, learnt as the run goes).

Invariants, checked after every restart:
1. results: every settled call (succeeded, failed, rejected, interrupted) of a conversation not deleted has exactly
   one function_result message with its id, a proposed or skipped call none, every call one function_call message,
   and no result names a call that is not there;
2. effects: no order number was acted on twice; a succeeded call run here acted once, a failed, rejected, skipped or
   proposed one never;
3. confirmed: a call acknowledged as confirmed is not proposed (nor skipped, rejected) and is still there; one
   acknowledged as settled kept that status; nothing is left confirmed or running after start-up; an interrupted
   call stays interrupted and never acts again;
4. positions: each conversation's message positions are 0..n-1, unique;
5. start-up: the worker says ready within the timeout after every kill, and never dies on its own;
6. acknowledged: a message, conversation, import, deletion or withdrawal the person was told about is as told.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text

from backend.storage.store import Store
from tests.crash_worker_loop import TOOL_NAME, LifeConfig
from tests.fake_tgi import FakeTGI, Reply

__all__ = ["INVARIANTS", "STEPS", "CrashCounts", "StoreChecker", "run_crash_harness"]

ROOT = Path(__file__).resolve().parents[1]
INVARIANTS = ("1 results", "2 effects", "3 confirmed", "4 positions", "5 start-up", "6 acknowledged")

# The steps kills are aimed at, with the operation that reaches each and how long after entering it to aim at first
# (a uniform draw from 0 to this, in seconds); once a step has been seen a few times, its median length is used.
STEPS: dict[str, tuple[str, float]] = {
    "recover": ("", 0.03),  # start-up: opening the store, interrupting the last life's calls
    "create": ("create", 0.01),
    "send": ("send", 0.02),  # the user's message stored, open cards skipped, the model asked
    "stream": ("send", 0.12),
    "reply-stored": ("send", 0.01),  # the reply's text stored, its calls being stored
    "proposed": ("send", 0.01),
    "confirm": ("confirm", 0.015),  # checked, then confirmed and running: two status changes
    "running": ("confirm", 0.005),  # the card says running, the tool not yet started
    "tool": ("confirm", 0.035),
    "tool-effect": ("confirm", 0.035),  # the tool acted and has not returned yet
    "settled": ("confirm", 0.08),  # the result stored, the model asked to go on
    "reject": ("reject", 0.015),
    "retry": ("retry", 0.08),
    "export": ("import", 0.01),
    "import": ("import", 0.01),
    "delete": ("delete", 0.01),
    "withdraw": ("withdraw", 0.01),
    "reconfirm": ("reconfirm", 0.01),
    "anywhere": ("mix", 1.5),  # no aim: a kill at any moment of a mixed run
}
_READY_TIMEOUT_S = 60.0  # generous: two cores shared with other work
_WARM_UP_S = 0.6  # at most this long of a life's work before its aimed step is watched for
_AIM_TIMEOUT_S = 4.0  # a life that never reaches the aimed step is killed wherever it is then
_SCRIPT_DEPTH = 120  # scripted replies kept queued at the fake server


@dataclass
class CrashCounts:
    """What the harness did and found; `violations` must be empty."""

    database: str = ""
    kills: int = 0
    lives: int = 0
    operations: Counter[str] = field(default_factory=Counter)  # "send ok", "confirm error", ...
    kills_by_step: Counter[str] = field(default_factory=Counter)  # where each kill landed
    kill_log: list[tuple[int, str, str]] = field(default_factory=list)  # (life, aimed at, landed in) per kill
    checks: Counter[str] = field(default_factory=Counter)  # per invariant, how many facts were checked
    violations: list[str] = field(default_factory=list)
    interrupted_at_start: int = 0  # calls start-up found confirmed or running and interrupted
    ready_seconds: list[float] = field(default_factory=list)  # from start to ready, per life
    elapsed_s: float = 0.0

    @property
    def operations_done(self) -> int:
        return sum(self.operations.values())


class _Worker:
    """Starts lives (forked by a zygote, or spawned), reads their lines, and kills them."""

    def __init__(self, folder: Path, start: str) -> None:
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()  # (when it arrived, the line)
        self.stderr = (folder / "worker-stderr.log").open("ab")
        self.pid: int | None = None
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self._env = {**os.environ, "PYTHONPATH": path}
        self._process: subprocess.Popen[bytes] | None = None
        self._zygote: subprocess.Popen[bytes] | None = None
        if start == "fork":
            self._zygote = self._popen(["zygote"])
        elif start != "spawn":
            raise ValueError(f"start must be 'fork' or 'spawn', not {start!r}")

    def _popen(self, arguments: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_worker_loop", *arguments], cwd=ROOT, env=self._env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
        )
        threading.Thread(target=self._read, args=(process,), daemon=True).start()
        return process

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.lines.put((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))
        if process is not self._zygote:  # a spawned life's end is its pipe's end
            self.lines.put((time.monotonic(), f"exited {process.pid} {process.wait()}"))

    def spawn(self, config: LifeConfig) -> None:
        self.pid = None
        if self._zygote is not None:
            self._send(self._zygote.stdin, f"spawn {config.to_json()}")
        else:
            self._process = self._popen(["life", config.to_json()])

    def tell(self, line: str) -> None:
        if self._zygote is not None:
            self._send(self._zygote.stdin, line)  # the life inherited the zygote's stdin and reads it now
        else:
            assert self._process is not None
            self._send(self._process.stdin, line)

    @staticmethod
    def _send(pipe: IO[bytes] | None, line: str) -> None:
        assert pipe is not None
        pipe.write((line + "\n").encode())
        pipe.flush()

    def kill(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it died on its own; its exit line says how

    def close(self) -> None:
        self.kill()
        for process in (self._process, self._zygote):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        self.stderr.close()


@dataclass
class _Life:
    """What one life printed before it ended."""

    steps: list[str] = field(default_factory=list)
    exited: int | None = None  # its exit code (-9: our SIGKILL)
    step_started: float = 0.0  # when the line of its current step arrived

    @property
    def last_step(self) -> str:
        return self.steps[-1] if self.steps else "before-start"


class _Harness:
    def __init__(
        self, folder: Path, database_url: str, fake: FakeTGI, seed: int, start: str, counts: CrashCounts,
    ) -> None:
        self.folder = folder
        self.database_url = database_url
        self.fake = fake
        self.rng = random.Random(seed)
        self.counts = counts
        self.worker = _Worker(folder, start)
        self.checker = StoreChecker(Store(database_url), folder, counts)  # creates the schema before any life
        self.life_number = 0
        self.orders = 1000  # order numbers in scripted calls: each one unique across the run
        self.last_kill_step = "none"
        self.aim = "none"
        self.durations: dict[str, list[float]] = {}  # how long each step lasted, as its lines' arrival times say

    def close(self) -> None:
        self.worker.close()
        self.checker.store.close()

    # Lives

    def start_life(self) -> _Life:
        self.life_number += 1
        self.counts.lives += 1
        self.worker.spawn(LifeConfig(self.database_url, self.fake.url, str(self.folder), self.life_number))
        return _Life()

    def read(self, life: _Life, until: str | None, timeout_s: float) -> bool:
        """Read the life's lines until one starts with `until` (True), or it exits or time runs out (False)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                arrived, line = self.worker.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            self._note(life, line, arrived)
            if life.exited is not None:
                return False
            if until is not None and line.startswith(until):
                return True

    def _note(self, life: _Life, line: str, arrived: float) -> None:
        kind, _, rest = line.partition(" ")
        if life.steps and kind in ("step", "did", "ready"):  # each of these ends the step before it
            self.durations.setdefault(life.last_step, []).append(arrived - life.step_started)
        if kind == "pid":
            self.worker.pid = int(rest)
        elif kind == "step":
            life.steps.append(rest)
            life.step_started = arrived
        elif kind == "ready":
            self.counts.interrupted_at_start += int(rest)
        elif kind == "did":
            self.counts.operations[rest] += 1
        elif kind == "exited":
            life.exited = int(rest.split()[1])

    def end(self, life: _Life) -> None:
        """SIGKILL the life (if it still runs) and read everything it wrote before dying."""
        if life.exited is None:
            self.worker.kill()
            self.read(life, until=None, timeout_s=30)
        if life.exited is None:
            raise RuntimeError("a killed worker did not exit within 30 s")

    def kill(self, life: _Life) -> None:
        """One of the kills: end the life and count where it landed (a life that ended on its own is a violation)."""
        on_its_own = life.exited is not None
        self.end(life)
        self.last_kill_step = life.last_step
        if on_its_own or life.exited != -signal.SIGKILL:
            self.counts.violations.append(
                f"5 start-up: life {self.life_number} ended on its own (exit {life.exited}) in step "
                f"{life.last_step}; see worker-stderr.log"
            )
            return
        self.counts.kills += 1
        self.counts.kills_by_step[life.last_step] += 1
        self.counts.kill_log.append((self.life_number, self.aim, life.last_step))

    def restart(self) -> _Life | None:
        """Start a life and wait until it is ready (None, a violation, if it never is)."""
        life = self.start_life()
        started = time.monotonic()
        self.counts.checks["5 start-up"] += 1
        if self.read(life, until="ready", timeout_s=_READY_TIMEOUT_S):
            self.counts.ready_seconds.append(time.monotonic() - started)
            return life
        detail = "exited" if life.exited is not None else f"not ready after {_READY_TIMEOUT_S:.0f} s"
        self.counts.violations.append(
            f"5 start-up: life {self.life_number} did not start ({detail}; last step {life.last_step}); "
            "see worker-stderr.log"
        )
        self.end(life)
        return None

    # The run

    def run(self, aims: list[str]) -> None:
        for aim in aims:
            life = self._restart_checked()
            self.aim = aim
            if aim == "recover":
                self.end(life)  # it only waited for `go`: stopping it is no kill of anything in flight
                life = self.start_life()
                self.read(life, until="step recover", timeout_s=_READY_TIMEOUT_S)
                self.kill_after(life, self.rng.uniform(0, self.spread(aim)))
            else:
                self.kill_while_working(life, aim)
        self.end(self._restart_checked())  # the last kill's state is checked after one more start-up

    def aims(self, kills: int) -> list[str]:
        """Every step in turn, each round shuffled, so kills spread over all of them; a tenth aim at nothing."""
        aims: list[str] = []
        while len(aims) < kills:
            round_ = [*STEPS, "anywhere"]
            self.rng.shuffle(round_)
            aims.extend(round_)
        return aims[:kills]

    def _restart_checked(self) -> _Life:
        while (life := self.restart()) is None:
            if len(self.counts.violations) > 20:
                raise RuntimeError("the worker keeps failing to start:\n" + "\n".join(self.counts.violations))
        self.checker.check(self.life_number, self.last_kill_step)
        return life

    def kill_while_working(self, life: _Life, aim: str) -> None:
        operation = STEPS[aim][0]
        spread = self.spread(aim)
        self._top_up_script()
        self.worker.tell(f"go {self.rng.randrange(2**32)} {operation}")
        if aim == "anywhere":
            self.read(life, until=None, timeout_s=self.rng.uniform(0, spread))
            self.kill(life)
        else:
            # A while of mixed work first, so the aimed step meets a store with some history in it.
            self.read(life, until=None, timeout_s=self.rng.uniform(0, _WARM_UP_S))
            self.read(life, until=f"step {aim}", timeout_s=_AIM_TIMEOUT_S)
            self.kill_after(life, self.rng.uniform(0, spread))

    def spread(self, aim: str) -> float:
        """How long after entering `aim` to kill at most: the step's median length so far (a guess until known)."""
        lasted = self.durations.get(aim, [])[-31:]
        return statistics.median(lasted) if len(lasted) >= 3 and aim != "anywhere" else STEPS[aim][1]

    def kill_after(self, life: _Life, delay_s: float) -> None:
        if life.exited is None:
            time.sleep(delay_s)
        self.kill(life)

    def _top_up_script(self) -> None:
        """Keep the fake server's queue full of replies: text, calls with fresh order numbers, and failures."""
        missing = _SCRIPT_DEPTH - self.fake.pending
        for _ in range(max(0, missing)):
            self.fake.add(self._reply())

    def _reply(self) -> Reply:
        kind = self.rng.choices(
            ["text", "call", "call-missing", "unknown", "error", "mid-stream"], [40, 38, 4, 4, 7, 7],
        )[0]
        pace = {"token_delay": self.rng.uniform(0.001, 0.008)}
        if kind == "text":
            return Reply(text="I have looked at your order and it is being handled now, nothing more to do.", **pace)
        if kind in ("call", "unknown"):
            self.orders += 1
            name = TOOL_NAME if kind == "call" else "refund_everything"
            call = {"function": name, "arguments": {"order_number": f"K{self.orders}"}}
            return Reply(text=json.dumps(call), **pace)
        if kind == "call-missing":
            return Reply(text=json.dumps({"function": TOOL_NAME, "arguments": {}}), **pace)
        if kind == "error":
            return Reply(status=500, error="Request failed during generation", error_type="generation")
        return Reply(
            text="It is on its way and will", error_after=3, error="CUDA error", error_type="generation", **pace,
        )


class StoreChecker:
    """Reads the whole store, the acknowledgements and the side effects, and counts facts checked and broken.

    Stateful across checks: an interrupted call's side effects are remembered, so a later re-run is seen.
    """

    def __init__(self, store: Store, folder: Path, counts: CrashCounts) -> None:
        self.store = store
        self.folder = folder
        self.counts = counts
        self.seen: set[str] = set()  # violations already reported: one broken fact is not counted at every check
        self.interrupted_effects: dict[str, int] = {}  # call id -> its order's side effects when first interrupted

    def check(self, life: int, after_step: str) -> None:
        """Check every invariant but 5 (the harness's own) against the store as it is now, while nothing writes."""
        state = _State.read(self.store, self.folder)
        where = f"life {life}, after a kill in step {after_step}"
        self._results(state, where)
        self._effects(state, where)
        self._confirmed(state, where)
        self._positions(state, where)
        self._acknowledged(state, where)

    def _fact(self, invariant: str, holds: bool, key: str, detail: str) -> None:
        self.counts.checks[invariant] += 1
        if not holds and key not in self.seen:
            self.seen.add(key)
            self.counts.violations.append(f"{invariant}: {detail}")

    def _results(self, state: _State, where: str) -> None:
        results = Counter(m["call_id"] for m in state.messages if m["role"] == "function_result")
        call_messages = Counter(m["call_id"] for m in state.messages if m["role"] == "function_call")
        for call in state.calls:
            if state.deleted(call["conversation_id"]):
                continue  # its messages went with the conversation
            status, found = call["status"], results[call["id"]]
            if status in ("succeeded", "failed", "rejected", "interrupted"):
                expected = 1
            elif status in ("proposed", "skipped"):
                expected = 0
            else:
                continue  # confirmed or running: invariant 3 says none is left after start-up
            self._fact("1 results", found == expected, f"results {call['id']}",
                       f"{where}: {status} call {call['id']} has {found} function_result messages, expected "
                       f"{expected}; {state.describe(call['conversation_id'])}")
            found = call_messages[call["id"]]
            self._fact("1 results", found == 1, f"call message {call['id']}",
                       f"{where}: call {call['id']} has {found} function_call messages; "
                       f"{state.describe(call['conversation_id'])}")
        known = {call["id"] for call in state.calls}
        for message in state.messages:
            if message["role"] == "function_result":
                self._fact("1 results", message["call_id"] in known, f"orphan {message['id']}",
                           f"{where}: result message {message['id']} names call {message['call_id']}, not stored")

    def _effects(self, state: _State, where: str) -> None:
        for order, runs in state.effects.items():
            self._fact("2 effects", runs <= 1, f"twice {order}", f"{where}: order {order} was acted on {runs} times")
        for call in state.calls:
            if state.imported(call):
                continue  # history from a file: its effects, if any, are its original's
            order = state.order(call)
            runs = state.effects.get(order or "", 0)
            status = call["status"]
            if status not in ("succeeded", "failed", "rejected", "skipped", "proposed"):
                continue  # interrupted: 0 or 1, and checked by invariant 3 never to change
            expected = 1 if status == "succeeded" else 0
            self._fact("2 effects", runs == expected, f"effects {call['id']}",
                       f"{where}: {status} call {call['id']} (order {order}) acted {runs} times, expected {expected}")

    def _confirmed(self, state: _State, where: str) -> None:
        calls = {call["id"]: call for call in state.calls}
        for call in state.calls:
            self._fact("3 confirmed", call["status"] not in ("confirmed", "running"), f"left {call['id']}",
                       f"{where}: call {call['id']} is still {call['status']} after start-up")
            if call["status"] != "interrupted" or state.imported(call):
                continue
            runs = state.effects.get(state.order(call) or "", 0)
            first = self.interrupted_effects.setdefault(call["id"], runs)
            self._fact("3 confirmed", runs == first and runs <= 1, f"rerun {call['id']}",
                       f"{where}: interrupted call {call['id']} acted {first} times when interrupted, {runs} now")
        for call_id in self.interrupted_effects:
            call = calls.get(call_id)
            if call is not None:
                self._fact("3 confirmed", call["status"] == "interrupted", f"moved {call_id}",
                           f"{where}: interrupted call {call_id} is now {call['status']}")
        for kind, fields in state.acks:
            if kind not in ("confirmed", "succeeded", "failed", "rejected"):
                continue
            call_id, conversation_id = fields[0], fields[1]
            call = calls.get(call_id)
            if call is None:
                self._fact("3 confirmed", conversation_id in state.deleting, f"lost {call_id}",
                           f"{where}: call {call_id} acknowledged as {kind} is not in the store")
                continue
            if kind == "confirmed":
                holds = call["status"] not in ("proposed", "skipped", "rejected")
            else:
                holds = call["status"] == kind
            self._fact("3 confirmed", holds, f"ack {kind} {call_id}",
                       f"{where}: call {call_id} acknowledged as {kind} is {call['status']}; "
                       f"{state.describe(conversation_id)}")

    def _positions(self, state: _State, where: str) -> None:
        positions: dict[str, list[int]] = {}
        for message in state.messages:
            positions.setdefault(message["conversation_id"], []).append(message["position"])
        for conversation_id, found in positions.items():
            self._fact("4 positions", sorted(found) == list(range(len(found))), f"positions {conversation_id}",
                       f"{where}: conversation {conversation_id} has positions {sorted(found)}")

    def _acknowledged(self, state: _State, where: str) -> None:
        texts = Counter(
            (m["conversation_id"], m["content"]) for m in state.messages if m["role"] == "user"
        )
        for kind, fields in state.acks:
            conversation_id = fields[0]
            if kind in ("created", "imported"):
                holds = conversation_id in state.conversations or conversation_id in state.deleting
                self._fact("6 acknowledged", holds, f"{kind} {conversation_id}",
                           f"{where}: conversation {conversation_id} acknowledged as {kind} is not stored")
            elif kind == "deleted":
                self._fact("6 acknowledged", state.deleted(conversation_id), f"deleted {conversation_id}",
                           f"{where}: conversation {conversation_id} acknowledged as deleted is still there")
            elif kind in ("sent", "withdrew"):
                message = " ".join(fields[1:])
                found = texts[(conversation_id, message)]
                if kind == "withdrew":
                    expected = {0}
                elif state.deleted(conversation_id) or conversation_id in state.withdrawing:
                    expected = {0, 1}
                else:
                    expected = {1}
                self._fact("6 acknowledged", found in expected, f"{kind} {conversation_id} {message}",
                           f"{where}: message {message!r} acknowledged as {kind} in {conversation_id} is stored "
                           f"{found} times; {state.describe(conversation_id)}")


@dataclass
class _State:
    """The store's rows and the harness's files, read once while the worker waits."""

    calls: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    conversations: dict[str, dict[str, Any]]
    effects: Counter[str]
    acks: list[tuple[str, list[str]]]
    deleting: set[str]
    withdrawing: set[str]

    @classmethod
    def read(cls, store: Store, folder: Path) -> _State:
        with store.engine.connect() as connection:
            # Plain SELECT * keeps this working whatever columns a later migration adds (deleted_at, imported_from).
            calls = [dict(r._mapping) for r in connection.execute(text("SELECT * FROM function_calls"))]
            messages = [dict(r._mapping) for r in connection.execute(
                text("SELECT id, conversation_id, position, role, content, call_id FROM messages"))]
            conversations = {
                r._mapping["id"]: dict(r._mapping) for r in connection.execute(text("SELECT * FROM conversations"))
            }
        effects_file, acks_file = folder / "effects.log", folder / "acks.log"
        effects = Counter(effects_file.read_text().split()) if effects_file.exists() else Counter()
        acks = []
        if acks_file.exists():
            for line in acks_file.read_text().splitlines():
                kind, *fields = line.split(" ")
                acks.append((kind, fields))
        return cls(
            calls=calls, messages=messages, conversations=conversations, effects=effects, acks=acks,
            deleting={f[0] for k, f in acks if k == "deleting"}, withdrawing={f[0] for k, f in acks if k == "withdrawing"},
        )

    def deleted(self, conversation_id: str) -> bool:
        """Gone from its owner's view: its row deleted, or (once deletes keep the audit) marked deleted."""
        row = self.conversations.get(conversation_id)
        return row is None or row.get("deleted_at") is not None

    def imported(self, call: dict[str, Any]) -> bool:
        """A call copied from an export: marked so, or older than the conversation it is in (its original's time)."""
        if call.get("imported_from"):
            return True
        conversation = self.conversations.get(call["conversation_id"])
        return conversation is not None and call["created_at"] < conversation["created_at"]

    @staticmethod
    def order(call: dict[str, Any]) -> str | None:
        """The order number a call acted on (as run) or would act on (as proposed)."""
        arguments = call["final_arguments"] or call["proposed_arguments"] or {}
        if isinstance(arguments, str):
            arguments = json.loads(arguments)
        value = arguments.get("order_number")
        return None if value is None else str(value)

    def describe(self, conversation_id: str) -> str:
        """The conversation's messages and calls in a line, for a violation's reproduction."""
        messages = sorted((m for m in self.messages if m["conversation_id"] == conversation_id),
                          key=lambda m: m["position"])
        shown = ", ".join(f"{m['position']}:{m['role']}{'/' + m['call_id'][:8] if m['call_id'] else ''}"
                          for m in messages)
        calls = ", ".join(f"{c['id'][:8]}={c['status']}" for c in self.calls if c["conversation_id"] == conversation_id)
        deleted = " (deleted)" if self.deleted(conversation_id) else ""
        return f"conversation {conversation_id}{deleted}: messages [{shown}]; calls [{calls}]"


def run_crash_harness(
    folder: Path, *, database_url: str, kills: int = 200, seed: int = 1, start: str = "fork",
    aims: Sequence[str] | None = None,
) -> CrashCounts:
    """Kill a worker `kills` times at seeded random points, restarting and checking the store after each.

    `aims` names the step each kill aims at (keys of STEPS), in order, instead of `kills` spread over all of them.
    """
    unknown = set(aims or ()) - set(STEPS)
    if unknown:
        raise ValueError(f"Unknown steps to aim at: {sorted(unknown)}; choose from {sorted(STEPS)}.")
    folder.mkdir(parents=True, exist_ok=True)
    counts = CrashCounts(database=database_url.split(":", 1)[0].split("+", 1)[0])
    started = time.monotonic()
    with FakeTGI() as fake:
        harness = _Harness(folder, database_url, fake, seed, start, counts)
        try:
            harness.run(list(aims) if aims is not None else harness.aims(kills))
        finally:
            harness.close()
    counts.elapsed_s = time.monotonic() - started
    return counts
