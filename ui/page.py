"""The handlers behind the page: each works out the acting user from its request (never from browser state), asks
the engine, and returns what the components show. ui/app.py lays the page out and wires these to its events.

A chat stream's outputs are the chat, the `view` state and the deck, which it leaves alone (`gr.skip()`) unless an
MCP server asks the person something during a call (Gradio rebuilds every output of every update, and 50 chats at
once must stay cheap); its last update puts the whole final view in `view`, and `show_view`, chained after every
stream, shows it: the chat and the card deck as the store has them, the textbox, the conversation list, the status
line. How a server's question reaches the running stream, and its answer the server: ui/questions.py.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import shutil
import tempfile
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from backend.core.validation import top_field
from backend.engine import Engine
from backend.engine.audit import AuditFilters
from backend.engine.events import CallUpdated, CallView, EngineEvent, ErrorEvent, Token
from backend.engine.turns import unanswered_message_ids
from backend.errors import CallcardError
from backend.models.protocol import ModelInfo
from backend.storage.tables import CallStatus, Conversation, Message, MessageRole
from backend.tools import ToolRegistry
from ui.auth import People
from ui.card_fields import arguments_from_json, check_values
from ui.deck import ACTIONS, Overlay, Question, Unanswered, deck_value
from ui.present import (
    ChatStream,
    audit_csv,
    audit_rows,
    conversation_choices,
    error_text,
    history_chat,
    md_text,
    servers_markdown,
    status_markdown,
    tickets_rows,
    tools_markdown,
)
from ui.questions import Questions

if TYPE_CHECKING:
    from backend.tools.mcp_servers import McpServers

__all__ = ["DEFAULT_CONCURRENCY", "Page", "frame_interval"]

log = logging.getLogger(__name__)

# Chats spend their time waiting on the model server, not on this process: 64 streams at once cost little here, and
# below 50 people chatting together would queue behind each other (see bench/bench_app_concurrency.py).
DEFAULT_CONCURRENCY = 64
_MAX_IMPORT_BYTES = 20 * 1024 * 1024
_EXPORT_TTL_S = 3600
_STATUS_TIMEOUT_S = 5.0
# How often a streaming answer is redrawn at most: still smooth to read, and a fraction of one update per token.
_FRAME_S = 0.08
# Redraws per second shared by all the answers streaming at once: each costs Gradio ~0.6 ms of the one core its event
# loop runs on, so with many chats each one is redrawn less often and their first words are not held back.
_FRAMES_PER_S = 150
_RUN_ID = re.compile(r"^[A-Za-z0-9]{6,40}$")
_END = object()
_FLUSH = object()
_ASKED = object()  # an MCP server asked a question during this stream's call, or one was settled: redraw the deck


def frame_interval(streams: int) -> float:
    """Seconds between redraws of one streaming answer while `streams` answers stream at once."""
    return max(_FRAME_S, streams / _FRAMES_PER_S)


class _Runs:
    """The replies streaming now, by browser session and run id, so Stop can end the right one.

    A run id is made in the browser when a person sends or clicks; a Stop can arrive before its stream has started
    (the stream waits in Gradio's queue), so such a stop is remembered and applied when the stream registers.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._early: OrderedDict[str, None] = OrderedDict()
        self._next: dict[str, str] = {}  # session -> run id of the message its send step just took

    def expect(self, session: str, run: str) -> None:
        """The send step took a message for `run`: its stream, which follows, registers under it."""
        self._next[session] = run

    def next_run(self, session: str) -> str:
        return self._next.pop(session, "")

    def register(self, key: str, task: asyncio.Task[Any]) -> None:
        self._tasks[key] = task
        if key in self._early:
            del self._early[key]
            task.cancel()

    def forget(self, key: str) -> None:
        self._tasks.pop(key, None)

    def stop(self, key: str) -> bool:
        """Cancel the run's reply; True when it was streaming."""
        task = self._tasks.get(key)
        if task is not None:
            task.cancel()
            return True
        self._early[key] = None
        while len(self._early) > 1024:
            self._early.popitem(last=False)
        return False


class Page:
    """The page's handlers; one instance serves every browser."""

    def __init__(
        self, *, engine: Engine, registry: ToolRegistry, people: People, backend_info: ModelInfo | None,
        tickets: Callable[[], list[Any]] | None = None, mcp: McpServers | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.people = people
        self._info = backend_info  # what the backend serves, asked once
        self.tickets = tickets
        self.mcp = mcp
        self.questions = Questions(mcp.elicitations) if mcp is not None else None
        self.export_dir = Path(tempfile.mkdtemp(prefix="callcard-exports-"))
        self._streams = 0  # answers streaming right now, across all sessions
        self._runs = _Runs()
        # Removed when the page goes away or the process exits; files older than an hour go at each export.
        weakref.finalize(self, shutil.rmtree, self.export_dir, ignore_errors=True)
        if self.questions is not None:  # a page that is gone can answer no question: the broker must know
            weakref.finalize(self, self.questions.close)

    # -- who ------------------------------------------------------------------------------------------------------

    def user(self, request: gr.Request | None, profile: gr.OAuthProfile | None) -> str | None:
        return self.people.user(request, profile)

    def who(self, user: str | None) -> str:
        mode = self.people.mode
        if user is None:
            return "Sign in with Hugging Face to chat." if mode == "oauth" else "Not signed in."
        role = " (support lead)" if self.people.is_lead(user) else ""
        suffix = " · logins are off" if mode == "open" else ""
        return f"👤 {md_text(user)}{role}{suffix}"

    def _client(self, request: gr.Request | None) -> str | None:
        """Who the rate limits count: with logins off everyone is one user, so each browser session on its own."""
        if self.people.mode != "open" or request is None or not request.session_hash:
            return None
        return f"session:{request.session_hash}"

    def sees_tickets(self, user: str | None) -> bool:
        """Support tickets hold customers' details: leads see them, and the single user when logins are off."""
        return self.tickets is not None and user is not None and (self.people.mode == "open" or self.people.is_lead(user))

    # -- one conversation, as the store has it ---------------------------------------------------------------------

    def conversation_view(
        self, user: str, conversation_id: str, *, overlays: dict[str, Overlay] | None = None, reset: str | None = None,
    ) -> tuple[list[Any], dict[str, Any]]:
        """(chat, deck) for a conversation: the deck holds the latest reply's cards and an unanswered message."""
        messages = self.engine.messages(conversation_id, user)
        calls = self.engine.calls(conversation_id, user)
        on_deck = _latest_reply_calls(messages, calls)
        unanswered = unanswered_message_ids(messages)
        chat = history_chat(messages, calls, on_card={c.id for c in on_deck}, unanswered=unanswered)
        panel = _unanswered_panel(messages, unanswered)
        return chat, deck_value(on_deck, overlays=overlays, unanswered=panel, reset=reset)

    def running_deck(self, user: str, conversation_id: str) -> dict[str, Any]:
        """The deck while a reply still runs: its cards as stored, with the questions MCP servers wait on."""
        messages = self.engine.messages(conversation_id, user)
        on_deck = _latest_reply_calls(messages, self.engine.calls(conversation_id, user))
        questions: list[Question] = self.questions.shown(user, conversation_id) if self.questions else []
        return deck_value(on_deck, questions=questions, busy=True)

    def open_values(self, user: str | None, conversation_id: str | None, *, newest: bool) -> list[Any]:
        """Values for the outputs that show one conversation (an empty chat when there is none)."""
        params = self.engine.params
        if user is None:
            return [[], deck_value([]), None, gr.update(choices=[], value=None), "", "", params.temperature,
                    params.max_new_tokens, gr.update(value=None, visible=False)]
        conversations = self.engine.list_conversations(user)
        current = next((c for c in conversations if c.id == conversation_id), None)
        if current is None and newest and conversations:
            current = conversations[0]
        listing = gr.update(choices=conversation_choices(conversations), value=current.id if current else None)
        if current is None:
            return [[], deck_value([]), None, listing, "", self.engine.system_prompt or "", params.temperature,
                    params.max_new_tokens, gr.update(value=None, visible=False)]
        chat, deck = self.conversation_view(user, current.id)
        return [
            chat, deck, current.id, listing, current.title, current.system_prompt or "",
            current.temperature if current.temperature is not None else params.temperature,
            current.max_new_tokens if current.max_new_tokens is not None else params.max_new_tokens,
            gr.update(value=None, visible=False),
        ]

    # -- page and sidebar events -----------------------------------------------------------------------------------

    def on_load(self, conversation_id: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        user = self.user(request, profile)
        lead = self.people.is_lead(user)
        note = (
            "Every call by everyone (you are a support lead), newest decision first. Filter by status, function or "
            "user; select a row of your own to open its conversation; export as CSV."
            if lead else
            "Your calls, newest decision first: the function, the outcome, the arguments as run and as the model "
            "proposed them. Select a row to open its conversation."
        )
        tickets = self.sees_tickets(user)
        return [
            *self.open_values(user, conversation_id, newest=True), self.who(user),
            gr.update(visible=self.people.mode == "password" and user is not None), gr.update(visible=lead), note,
            gr.update(visible=tickets), tickets_rows(self.tickets()) if tickets and self.tickets else [],
        ]

    def on_switch(self, selected: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        return self.open_values(self.user(request, profile), selected, newest=False)

    def on_new(self, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        return self.open_values(self.user(request, profile), None, newest=False)

    def on_rename(
        self, conversation_id: str | None, title: str, request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> tuple[Any, Any]:
        user = self.user(request, profile)
        if user is None or not conversation_id:
            return gr.skip(), gr.skip()
        try:
            conversation = self.engine.rename_conversation(conversation_id, user, title or "")
        except CallcardError as error:
            _warn(error_text(error))
            return gr.skip(), gr.skip()
        return self._listing(user, conversation.id), conversation.title

    def on_delete(self, conversation_id: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        user = self.user(request, profile)
        if user is not None and conversation_id:
            try:
                self.engine.delete_conversation(conversation_id, user)
            except CallcardError as error:
                _warn(error_text(error))
        return [*self.open_values(user, None, newest=True), gr.update(visible=False)]

    def on_export(self, conversation_id: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> Any:
        user = self.user(request, profile)
        if user is None or not conversation_id:
            _warn("Open a conversation first.")
            return gr.skip()
        try:
            data = self.engine.export_conversation(conversation_id, user)
        except CallcardError as error:
            _warn(error_text(error))
            return gr.skip()
        slug = re.sub(r"[^A-Za-z0-9]+", "-", data["conversation"].get("title") or "conversation").strip("-")[:40]
        path = self._export_path(f"callcard-{slug or 'conversation'}-{conversation_id[:8]}.json")
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        return gr.update(value=str(path), visible=True)

    def on_import(self, file: str | None, request: gr.Request, profile: gr.OAuthProfile | None) -> list[Any]:
        user = self.user(request, profile)
        if user is None or not file:
            return [gr.skip()] * 9
        try:
            path = Path(file)
            if path.stat().st_size > _MAX_IMPORT_BYTES:
                raise ValueError(f"the file is larger than {_MAX_IMPORT_BYTES // (1024 * 1024)} MB")
            data = json.loads(path.read_text(encoding="utf-8"))
            conversation = self.engine.import_conversation(data, user)
        except (OSError, ValueError, CallcardError) as error:
            _warn(error_text(error) if isinstance(error, CallcardError) else f"This file cannot be imported: {error}.")
            return [gr.skip()] * 9
        return self.open_values(user, conversation.id, newest=False)

    def on_save_settings(
        self, conversation_id: str | None, system_prompt: str, temperature: float | None, max_new_tokens: float | None,
        request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> tuple[Any, Any]:
        user = self.user(request, profile)
        if user is None:
            return gr.skip(), gr.skip()
        try:
            if not conversation_id:
                conversation_id = self.engine.create_conversation(user).id
            self.engine.update_settings(
                conversation_id, user, system_prompt=system_prompt,
                temperature=float(temperature) if temperature is not None else None,
                max_new_tokens=int(max_new_tokens) if max_new_tokens is not None else None,
            )
        except CallcardError as error:
            _warn(error_text(error))
            return gr.skip(), gr.skip()
        gr.Info("Settings saved for this conversation.")
        return conversation_id, self._listing(user, conversation_id)

    def _listing(self, user: str, current: str | None) -> Any:
        return gr.update(choices=conversation_choices(self.engine.list_conversations(user)), value=current)

    # -- the chat -------------------------------------------------------------------------------------------------

    def take_message(self, text: str | None, run: str | None, request: gr.Request) -> tuple[Any, Any]:
        """The message to the hidden box the stream reads it from; the textbox emptied and off until the reply ends."""
        if run and _RUN_ID.match(run) and request is not None:
            self._runs.expect(request.session_hash or "", run)
        return text or "", gr.update(value="", interactive=False)

    async def send(
        self, text: str, conversation_id: str | None, request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> AsyncIterator[tuple[Any, Any, Any]]:
        """Send the message and stream the reply; a message the engine did not store goes back to the textbox."""
        run = self._runs.next_run(request.session_hash or "") if request is not None else ""
        user = self.user(request, profile)
        text = text or ""
        if user is None:
            _warn("Sign in first.")
            yield gr.skip(), {"text": text, "deck": deck_value([])}, gr.skip()
            return
        if not text.strip():
            yield gr.skip(), self._final(user, conversation_id, text=text), gr.skip()
            return
        limit = self.engine.limits.max_message_chars
        if len(text.strip()) > limit:  # refused before a conversation is made for it; the text stays in the box
            _warn(f"The message is {len(text.strip()):,} characters long; the limit is {limit:,}. Shorten it and send again.")
            yield gr.skip(), self._final(user, conversation_id, text=text), gr.skip()
            return
        try:
            conversation = self._conversation_for(user, conversation_id)
            # A new message takes the deck's cards away: the earlier calls show their details in the chat again.
            fresh = conversation.id != conversation_id
            stream = ChatStream([]) if fresh else self._live(user, conversation.id, deck_stays=False)
        except CallcardError as error:
            _warn(error_text(error))
            yield gr.skip(), self._final(user, conversation_id, text=text), gr.skip()
            return
        stream.add_user(text)
        yield stream.chat, gr.skip(), gr.skip()
        events = self.engine.send(conversation.id, user, text, client=self._client(request))
        async for update in self._drive(events, stream, request, run, user=user, conversation_id=conversation.id):
            yield update
        if not stream.stored:
            # The engine refused the message before storing it (another reply is running): back to the box.
            _warn(stream.error or "The message was not sent.")
        yield self._last(stream, user, conversation.id, text=None if stream.stored else text)

    async def on_deck(
        self, conversation_id: str | None, event: gr.EventData, request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> AsyncIterator[tuple[Any, Any, Any]]:
        """A click on the card deck: confirm, reject, apply JSON, or retry / edit / remove an unanswered message."""
        data = event._data if isinstance(getattr(event, "_data", None), dict) else {}
        action, call_id = data.get("action"), str(data.get("call_id") or "")
        run = str(data.get("run") or "")
        user = self.user(request, profile)
        if user is None or not conversation_id or action not in ACTIONS:
            yield gr.skip(), {"deck": deck_value([])} if user is None else self._final(user, conversation_id), gr.skip()
            return
        try:
            events = self._deck_events(user, conversation_id, action, call_id, data, client=self._client(request))
        except _Shown as shown:
            yield gr.skip(), shown.view, gr.skip()
            return
        except CallcardError as error:
            _warn(error_text(error))
            yield gr.skip(), self._final(user, conversation_id), gr.skip()
            return
        stream = self._live(user, conversation_id, drop_trailing_errors=action == "retry")
        async for update in self._drive(events, stream, request, run, user=user, conversation_id=conversation_id):
            yield update
        yield self._last(stream, user, conversation_id)

    def _deck_events(
        self, user: str, conversation_id: str, action: str, call_id: str, data: dict[str, Any],
        *, client: str | None = None,
    ) -> AsyncIterator[EngineEvent]:
        """The engine stream an action starts; actions that stream nothing raise _Shown with the view to show."""
        if action == "retry":
            return self.engine.retry(conversation_id, user, client=client)
        if action in ("edit", "remove"):
            text = self.engine.withdraw_unanswered(conversation_id, user)
            raise _Shown(self._final(user, conversation_id, text=text if action == "edit" else None))
        view = self._call(user, conversation_id, call_id)
        if action == "reject":
            reason = data.get("reason") if isinstance(data.get("reason"), str) else None
            return self.engine.reject(call_id, user, reason)
        if action == "apply_json":
            arguments, problem = arguments_from_json(str(data.get("text") or ""))
            if arguments is None:
                overlay = Overlay(arguments=view.arguments, json_error=problem or "", json_open=True)
                raise _Shown(self._final(user, conversation_id, overlays={call_id: overlay}))
            _typed, _normalised, errors = check_values(view.model_copy(update={"arguments": arguments}), {})
            overlay = Overlay(arguments=arguments, errors=errors, json_open=bool(errors))
            raise _Shown(self._final(user, conversation_id, overlays={call_id: overlay}, reset=call_id))
        values = data.get("values") if isinstance(data.get("values"), dict) else {}
        arguments, _normalised, errors = check_values(view, values)
        if errors:
            names = ", ".join(sorted({top_field(k).replace("_", " ") or "the call" for k in errors}))
            overlay = Overlay(arguments=arguments, errors=errors, notice=f"Nothing ran: check {names} first.")
            raise _Shown(self._final(user, conversation_id, overlays={call_id: overlay}))
        return self.engine.confirm(call_id, arguments, user)

    def _call(self, user: str, conversation_id: str, call_id: str) -> CallView:
        """The open call a card action is about, in the acting user's conversation."""
        for view in self.engine.calls(conversation_id, user):
            if view.id == call_id:
                if view.status != CallStatus.PROPOSED:
                    raise _Shown(self._final(user, conversation_id))  # already decided (another tab): show that
                return view
        raise _Shown(self._final(user, conversation_id))

    async def on_deck_click(self, event: gr.EventData, request: gr.Request, profile: gr.OAuthProfile | None) -> None:
        """What the deck says while a reply runs: Stop, or the answer to an MCP server's question.

        Neither waits for the stream nor draws anything: the running stream shows what follows (ui/questions.py).
        """
        data = event._data if isinstance(getattr(event, "_data", None), dict) else {}
        if data.get("action") == "answer":
            user = self.user(request, profile)
            if user is not None and self.questions is not None:
                values = data.get("values") if isinstance(data.get("values"), dict) else {}
                self.questions.answer(str(data.get("question") or ""), user, str(data.get("answer") or ""), values)
            return
        run = str(data.get("run") or "")
        if request is not None and _RUN_ID.match(run):
            self._runs.stop(f"{request.session_hash}:{run}")

    def _last(
        self, stream: ChatStream, user: str, conversation_id: str, *, text: str | None = None,
    ) -> tuple[Any, Any, Any]:
        """A stream's last update: the chat, and the final view as the store has it.

        A message answered with text alone needs no second look at the store: the streamed chat is the stored one
        and the deck is empty (one read and one render of the whole conversation fewer per message).
        """
        shown = (stream.chat, deck_value([])) if stream.plain_answer and text is None else None
        view = self._final(user, conversation_id, text=text, check_status=stream.error is not None, shown=shown)
        return view.get("chat", stream.chat), view, gr.skip()

    def _final(
        self, user: str, conversation_id: str | None, *, text: str | None = None, check_status: bool = False,
        overlays: dict[str, Overlay] | None = None, reset: str | None = None,
        shown: tuple[list[Any], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """What show_view shows after a stream: chat, deck, textbox text, conversation, list and title.

        `shown` is the (chat, deck) when the caller already knows them to be what the store holds.
        """
        view: dict[str, Any] = {"text": text, "check_status": check_status}
        conversations = self.engine.list_conversations(user)
        current = next((c for c in conversations if c.id == conversation_id), None)
        if current is None:
            return {**view, "deck": deck_value([])}
        view["chat"], view["deck"] = shown or self.conversation_view(user, current.id, overlays=overlays, reset=reset)
        view.update(conversation_id=current.id, choices=conversation_choices(conversations), title=current.title)
        return view

    def _conversation_for(self, user: str, conversation_id: str | None) -> Conversation:
        """The open conversation, or a new one when there is none (or it is gone)."""
        if conversation_id:
            try:
                return self.engine.conversation(conversation_id, user)
            except CallcardError:
                log.info("conversation %s is gone; starting a new one", conversation_id)
        return self.engine.create_conversation(user)

    def _live(
        self, user: str, conversation_id: str, *, drop_trailing_errors: bool = False, deck_stays: bool = True,
    ) -> ChatStream:
        """The chat as stored, to stream a reply onto (a retried reply's old error makes way for the new try)."""
        messages = self.engine.messages(conversation_id, user)
        if drop_trailing_errors:
            while messages and messages[-1].role == MessageRole.ERROR:
                messages = messages[:-1]
        calls = self.engine.calls(conversation_id, user)
        carded = {c.id for c in _latest_reply_calls(messages, calls)} if deck_stays else set()
        return ChatStream(history_chat(messages, calls, on_card=carded, unanswered=unanswered_message_ids(messages)))

    async def _drive(
        self, events: AsyncIterator[EngineEvent], stream: ChatStream, request: gr.Request | None, run: str,
        *, user: str, conversation_id: str,
    ) -> AsyncIterator[tuple[Any, Any, Any]]:
        """Fold engine events into the chat, yielding updates as often as people can see them; Stop ends it.

        The engine runs in a task of its own, so Stop can cancel it wherever it waits (the model server, a tool):
        the engine then keeps what was written, marked stopped, and closes the model request. Tokens are shown at
        most every `frame_interval`; the first token and every other event are shown at once. While an MCP call
        runs, its server's questions are drawn on the deck as they come and go.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        watched: set[str] = set()

        def wake() -> None:  # called from the MCP servers' thread
            try:
                loop.call_soon_threadsafe(queue.put_nowait, _ASKED)
            except RuntimeError:  # the loop is closed: the page went away with it
                pass

        def follow(event: EngineEvent) -> None:
            # Here, in the task that runs the engine, before it sends the call: no question can come first.
            if self.questions is None or not isinstance(event, CallUpdated):
                return
            call = event.call
            if call.status == CallStatus.RUNNING and call.server:
                self.questions.watch(
                    call_id=call.id, function=call.function, server=call.server, user=user,
                    conversation_id=conversation_id, wake=wake,
                )
                watched.add(call.id)
            elif call.id in watched:
                watched.discard(call.id)
                self.questions.unwatch(call.id)

        async def pump() -> None:
            async for event in events:
                follow(event)
                queue.put_nowait(event)

        task = asyncio.create_task(pump())
        # A callback, not a `finally` in pump: a task cancelled before its first step never runs its body.
        task.add_done_callback(lambda _: queue.put_nowait(_END))
        key = f"{request.session_hash}:{run}" if request is not None and run else ""
        if key:
            self._runs.register(key, task)
        self._streams += 1  # every handler runs on the event loop: no lock needed
        shown_at = 0.0
        flush: asyncio.TimerHandle | None = None  # tokens wait for their frame: this wakes the loop when it is due
        try:
            while (event := await queue.get()) is not _END:
                if event is _FLUSH:
                    flush = None
                    shown_at = time.monotonic()
                    yield stream.chat, gr.skip(), gr.skip()
                    continue
                if event is _ASKED:
                    yield stream.chat, gr.skip(), self.running_deck(user, conversation_id)
                    continue
                stream.apply(event)
                if isinstance(event, Token):
                    due = shown_at + frame_interval(self._streams) - time.monotonic()
                    if due > 0:
                        if flush is None:
                            flush = loop.call_later(due, queue.put_nowait, _FLUSH)
                        continue
                if flush is not None:
                    flush.cancel()
                    flush = None
                shown_at = time.monotonic()
                yield stream.chat, gr.skip(), gr.skip()
            try:
                await task
            except asyncio.CancelledError:
                stream.stop()
        except Exception as error:  # a bug or a lost conversation must end as a message, not a stuck spinner
            if not isinstance(error, CallcardError):
                log.exception("the engine failed")
            stream.apply(ErrorEvent(message=error_text(error), retryable=False))
        finally:
            if flush is not None:
                flush.cancel()
            self._streams -= 1
            if key:
                self._runs.forget(key)
            if not task.done():  # the page went away: stop the engine too
                task.cancel()
            if self.questions is not None:
                for call_id in watched:
                    self.questions.unwatch(call_id)

    async def show_view(self, view: dict[str, Any] | None, shown_status: str | None) -> tuple[Any, ...]:
        """The final view a stream left: chat, deck, textbox, conversation id, list, title and status line.

        The status line turns red as soon as a reply fails (from the failure itself, no request), and green again
        after a reply succeeds; otherwise its minute-by-minute check keeps it.
        """
        view = view or {}
        text = view.get("text")
        textbox = gr.update(interactive=True) if text is None else gr.update(value=text, interactive=True)
        chosen = view.get("conversation_id")
        failure = getattr(self.engine.backend, "last_failure", None)
        if view.get("check_status") and failure is not None:
            status: Any = status_markdown(self._info, False, problem=failure.reason)
        elif failure is None and "🔴" in (shown_status or ""):
            status = await self.status()
        else:
            status = gr.skip()
        return (
            view["chat"] if view.get("chat") is not None else gr.skip(),
            view["deck"] if view.get("deck") is not None else gr.skip(),
            textbox,
            chosen or gr.skip(),
            gr.update(choices=view["choices"], value=chosen) if "choices" in view else gr.skip(),
            view["title"] if view.get("title") is not None else gr.skip(),
            status,
        )

    # -- status, tools, audit and tickets ----------------------------------------------------------------------------

    def tools_view(self) -> str:
        """The Tools tab as things are now: MCP servers connect, drop and change their tools while the app runs."""
        functions = tools_markdown(self.registry.tools())
        if self.mcp is None:
            return functions
        return f"{servers_markdown(self.mcp.status())}\n\n---\n\n## Functions\n\n{functions}"

    def function_choices(self) -> Any:
        """The audit's function filter, with the tools there are now."""
        return gr.update(choices=[("any function", "")] + [(t.name, t.name) for t in self.registry.tools()])

    async def status(self) -> str:
        """The status line: what the backend serves and whether it answers (plain words; details in the log)."""
        info, healthy, problem = self._info, None, None
        backend = self.engine.backend
        try:
            if info is None:
                info = self._info = await asyncio.wait_for(backend.info(), _STATUS_TIMEOUT_S)
            healthy = await asyncio.wait_for(backend.health(), _STATUS_TIMEOUT_S)
        except TimeoutError:
            problem, healthy = "the model server did not answer within 5 seconds.", False
        except CallcardError as error:
            problem, healthy = str(error), False
        except Exception:
            log.exception("status check failed")
            problem, healthy = "the status check failed.", False
        return status_markdown(info, healthy, problem=problem)

    def audit(
        self, status: str | None, function: str | None, user_filter: str | None, request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> tuple[list[list[Any]], list[str | None]]:
        """(rows, the conversation id of each row it may open) for the calls the acting user may see."""
        user = self.user(request, profile)
        if user is None:
            return [], []
        filters = AuditFilters(status=status, function=function, user=user_filter)
        entries = self.engine.audit(user, filters, sees_everyone=self.people.is_lead(user))
        links = [entry.conversation_id if entry.can_open else None for entry in entries]
        return audit_rows(entries, self._tool_source), links

    def open_from_audit(
        self, links: list[str | None], event: gr.SelectData, request: gr.Request, profile: gr.OAuthProfile | None,
    ) -> list[Any]:
        """A selected audit row opens its conversation in the Chat tab (only the acting user's own)."""
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        target = links[row] if isinstance(row, int) and 0 <= row < len(links) else None
        if target is None:
            _warn("Only the person who had this conversation can open it.")
            return [*[gr.skip()] * 9, gr.skip()]
        return [*self.open_values(self.user(request, profile), target, newest=False), gr.Tabs(selected="chat")]

    def audit_export(
        self, status: str | None, function: str | None, user_filter: str | None, request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> Any:
        rows, _links = self.audit(status, function, user_filter, request, profile)
        path = self._export_path(f"callcard-audit-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv")
        path.write_text(audit_csv(rows), encoding="utf-8")
        return gr.update(value=str(path), visible=True)

    def ticket_rows(self, request: gr.Request, profile: gr.OAuthProfile | None) -> list[list[Any]]:
        user = self.user(request, profile)
        if not self.sees_tickets(user) or self.tickets is None:
            return []
        return tickets_rows(self.tickets())

    def _tool_source(self, function: str) -> str | None:
        # For calls stored before their tool's source was: where the function comes from now, while it exists.
        tool = self.registry.get(function)
        return tool.source if tool is not None else None

    def _export_path(self, name: str) -> Path:
        # One directory per file: two people exporting at the same second never overwrite each other's file.
        # Gradio keeps its own copy of a file it serves, so an hour-old one here is not needed any more.
        stale = time.time() - _EXPORT_TTL_S
        for folder in self.export_dir.iterdir():
            if folder.stat().st_mtime < stale:
                shutil.rmtree(folder, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.export_dir)) / name


class _Shown(Exception):
    """A deck action that streams nothing: `view` is what to show now."""

    def __init__(self, view: dict[str, Any]) -> None:
        super().__init__("shown")
        self.view = view


def _latest_reply_calls(messages: list[Message], calls: list[CallView]) -> list[CallView]:
    """The calls the deck shows: those after the last user message (the latest reply's), and any still open."""
    last_user = max((i for i, m in enumerate(messages) if m.role == MessageRole.USER), default=-1)
    after = {m.call_id for m in messages[last_user + 1:] if m.role == MessageRole.FUNCTION_CALL and m.call_id}
    open_statuses = (CallStatus.PROPOSED, CallStatus.CONFIRMED, CallStatus.RUNNING)
    return [c for c in calls if c.id in after or c.status in open_statuses]


def _unanswered_panel(messages: list[Message], unanswered: set[int]) -> Unanswered | None:
    """The panel for the conversation's last message when it got no answer: its text and the last error."""
    last_user = next((m for m in reversed(messages) if m.role == MessageRole.USER), None)
    if last_user is None or last_user.id not in unanswered:
        return None
    errors = [m for m in messages if m.role == MessageRole.ERROR and m.position > last_user.position]
    reason = errors[-1].content if errors else "The reply was stopped before the model wrote anything."
    return Unanswered(text=last_user.content, error=reason)


def _warn(message: str) -> None:
    # Toasts render HTML: escape whatever the message quotes.
    gr.Warning(html.escape(message))
