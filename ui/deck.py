"""The card deck: every card of the latest reply, and the panel of a message that was not answered, as one HTML
component with static events.

Why one component: Gradio drops event listeners created inside `@gr.render` when it renders again, so cards built
that way lost their follow-up events (every Confirm ended in a server KeyError and an error on the page). Here the
server renders the deck to HTML (`deck_value`), a `gr.HTML` shows it, and its browser code (`DECK_JS`, run once)
listens to clicks on the deck's root and sends `{action, call_id, values, reason, run}` through the component's
static `submit` event. Gradio morphs the DOM on each new value, so what a person typed in a field survives a
re-render unless the server changes that field.

Everything in the HTML that comes from a model, a tool or a person goes through `html.escape`: `gr.HTML` does not
sanitise. Pure functions, no gradio: tests render and check the HTML directly.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from backend.core.provenance import Provenance
from backend.core.validation import top_field
from backend.engine.events import CallView
from backend.storage.tables import SETTLED_STATUSES, CallStatus
from backend.tools import Elicitation
from ui.card_fields import FieldView, arguments_json, card_fields, form_fields

__all__ = [
    "ACTIONS",
    "ANSWERS",
    "DECK_CSS",
    "DECK_JS",
    "DECK_TEMPLATE",
    "Overlay",
    "Question",
    "Unanswered",
    "deck_html",
    "deck_value",
    "status_label",
]

ACTIONS = frozenset({"confirm", "reject", "apply_json", "retry", "edit", "remove"})
ANSWERS = frozenset({"accept", "decline", "cancel"})  # a question's buttons: the MCP answers they send
_FOLD_LINES = 60
_FOLD_CHARS = 6000
_serials = itertools.count(1)
# The activity line's words for a value sent while a call runs (the browser's own words are in DECK_JS's LABELS).
_WAITING_FOR_ANSWER = "The server waits for your answer…"
_RUNNING = "Running the function, then the model answers…"

STATUS_LABELS: dict[str, str] = {
    CallStatus.PROPOSED: "⏸️ waiting for your confirmation",
    CallStatus.CONFIRMED: "⏳ confirmed",
    CallStatus.RUNNING: "⏳ running…",
    CallStatus.SUCCEEDED: "✅ done",
    CallStatus.FAILED: "❌ failed",
    CallStatus.REJECTED: "🚫 rejected",
    CallStatus.INTERRUPTED: "⚠️ interrupted",
    CallStatus.SKIPPED: "⏭️ skipped: you wrote instead",
}


def status_label(view: CallView) -> str:
    """A call's status in words (with an icon)."""
    label = STATUS_LABELS.get(str(view.status), str(view.status))
    if view.auto and view.status in SETTLED_STATUSES:
        label += " (ran automatically)"
    return label


@dataclass(frozen=True)
class Overlay:
    """What a card shows instead of the stored call: the values a person tried, why they cannot run yet."""

    arguments: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)
    notice: str = ""
    json_error: str = ""
    json_open: bool = False  # the person was editing the JSON: keep the editor open


@dataclass(frozen=True)
class Unanswered:
    """The conversation's last message got no answer: what it said and what went wrong."""

    text: str
    error: str


@dataclass(frozen=True)
class Question:
    """An MCP server's question to the person while one of its tools runs (elicitation), as its card shows it."""

    elicitation: Elicitation
    function: str  # the call that was running when the server asked
    values: Mapping[str, Any] = field(default_factory=dict)  # what the person answered, when it could not be sent
    errors: Mapping[str, str] = field(default_factory=dict)
    notice: str = ""


def deck_value(
    cards: Iterable[CallView],
    *,
    overlays: Mapping[str, Overlay] | None = None,
    unanswered: Unanswered | None = None,
    reset: str | None = None,
    questions: Sequence[Question] = (),
    busy: bool = False,
) -> dict[str, Any]:
    """The deck component's value: its HTML, the card to bring into view, the card whose fields start over.

    `serial` makes every value new, so the browser always sees it arrive (and switches the deck's buttons on again).
    `busy` is for a value sent while a reply still runs (a question came): the activity line and Stop stay.
    """
    cards = list(cards)
    focus = questions[0].elicitation.id if questions else next(
        (c.id for c in cards if c.status == CallStatus.PROPOSED), None
    )
    return {
        "html": deck_html(cards, overlays=overlays or {}, unanswered=unanswered, questions=questions),
        "focus": focus,
        "reset": reset,
        "busy": busy,
        "activity": (_WAITING_FOR_ANSWER if questions else _RUNNING) if busy else None,
        "serial": next(_serials),
    }


def deck_html(
    cards: Iterable[CallView], *, overlays: Mapping[str, Overlay] | None = None, unanswered: Unanswered | None = None,
    questions: Sequence[Question] = (),
) -> str:
    """The deck's HTML: the unanswered message's panel, one card per call, then the servers' questions."""
    overlays = overlays or {}
    parts = [_unanswered_panel(unanswered)] if unanswered else []
    parts += [_card(view, overlays.get(view.id)) for view in cards]
    parts += [_question_card(question) for question in questions]
    return "".join(parts)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _unanswered_panel(unanswered: Unanswered) -> str:
    return (
        '<section class="cc-panel" role="alert" aria-label="Your last message was not answered">'
        f'<p class="cc-panel-title">⚠️ Your last message was not answered.</p>'
        f'<p class="cc-panel-error">{_e(unanswered.error)}</p>'
        '<div class="cc-actions">'
        '<button type="button" class="cc-button cc-primary" data-action="retry">↻ Retry</button>'
        '<button type="button" class="cc-button" data-action="edit">✎ Edit and resend</button>'
        '<button type="button" class="cc-button" data-action="remove">🗑 Remove</button>'
        "</div></section>"
    )


def _origin(server: str) -> str:
    return f'<span class="cc-origin" title="{_e(f"Runs on the MCP server {server}")}">MCP · {_e(server)}</span>'


def _card(view: CallView, overlay: Overlay | None) -> str:
    status = str(view.status)
    head = (
        f'<header class="cc-card-head"><span class="cc-fn">🛠️ {_e(view.function)}</span>'
        + (_origin(view.server) if view.server else "")
        + f'<span class="cc-state">{_e(status_label(view))}</span></header>'
    )
    if view.description:
        head += f'<p class="cc-desc">{_e(view.description)}</p>'
    if view.warning and view.status == CallStatus.PROPOSED:
        head += f'<p class="cc-warning">⚠️ {_e(view.warning)}</p>'
    body = _open_body(view, overlay) if view.status == CallStatus.PROPOSED else _settled_body(view)
    return (
        f'<section class="cc-card cc-card-{_e(status)}" id="cc-card-{_e(view.id)}" data-call="{_e(view.id)}" '
        f'aria-label="{_e(view.function)}: {_e(status_label(view))}">{head}{body}</section>'
    )


def _open_body(view: CallView, overlay: Overlay | None) -> str:
    if overlay is not None:
        # What the person changed in the form is theirs now, whatever the model's value was sourced from.
        edited = {k for k in {*overlay.arguments, *view.arguments} if overlay.arguments.get(k) != view.arguments.get(k)}
        sources = {k: s for k, s in view.sources.items() if top_field(k) not in edited}
        sources |= {k: Provenance(kind="person") for k in edited if k in overlay.arguments}
        view = view.model_copy(update={"arguments": overlay.arguments, "missing": [], "sources": sources})
    fields = card_fields(view, overlay.errors if overlay is not None else None)
    errors = overlay.errors if overlay is not None else view.errors
    known = {f.name for f in fields}
    general = [m for k, m in errors.items() if top_field(k) not in known]
    notice = " ".join([overlay.notice if overlay else "", *general]).strip()
    parts = [f'<p class="cc-notice" role="alert">⚠️ {_e(notice)}</p>' if notice else ""]
    parts += [_field(view.id, f) for f in fields]
    json_error = overlay.json_error if overlay else ""
    json_open = " open" if overlay is not None and (overlay.json_open or overlay.json_error) else ""
    parts.append(
        f'<details class="cc-json"{json_open}><summary>Edit as JSON</summary>'
        f'<textarea class="cc-json-text" spellcheck="false" aria-label="Arguments as JSON" rows="4">'
        f"{_e(arguments_json(view.arguments))}</textarea>"
        + (f'<p class="cc-field-error" role="alert">⚠️ {_e(json_error)}</p>' if json_error else "")
        + '<button type="button" class="cc-button cc-small" data-action="apply_json">Apply JSON to the fields</button>'
        "</details>"
    )
    parts.append(
        '<input type="text" class="cc-reason" aria-label="Reason for rejecting" maxlength="1000" '
        'placeholder="Reason for rejecting (optional; the model is told)">'
        '<div class="cc-actions">'
        '<button type="button" class="cc-button cc-primary" data-action="confirm">Confirm</button>'
        '<button type="button" class="cc-button cc-stop-button" data-action="reject">Reject</button>'
        "</div>"
    )
    return '<form class="cc-form" novalidate>' + "".join(parts) + "</form>"


_SOURCE_ICONS = {"user": "💬", "tool": "🔗", "default": "·", "person": "✏️", "model": "⚠️"}


def _field(call_id: str, spec: FieldView) -> str:
    control_id = _e(f"cc-{call_id}-{spec.name}")
    classes = "cc-field cc-missing" if spec.missing else "cc-field"
    described: list[str] = []
    extra = ""
    if spec.help:
        extra += f'<p class="cc-help" id="{control_id}-help">{_e(spec.help)}</p>'
        described.append(f"{control_id}-help")
    if spec.missing:
        ask = f"❓ The model asks for the {spec.label.rstrip(' *')}"
        extra += f'<p class="cc-ask">{_e(ask)}.</p>'
    if spec.source:
        icon = _SOURCE_ICONS.get(spec.source_kind, "")
        extra += (f'<p class="cc-source cc-source-{_e(spec.source_kind)}" id="{control_id}-source">'
                  f"{icon} {_e(spec.source)}</p>")
        described.append(f"{control_id}-source")
    if spec.error:
        extra += f'<p class="cc-field-error" id="{control_id}-error" role="alert">⚠️ {_e(spec.error)}</p>'
        described.append(f"{control_id}-error")
    aria = f' aria-describedby="{" ".join(described)}"' if described else ""
    invalid = ' aria-invalid="true"' if spec.error or spec.missing else ""
    required = " required" if spec.required else ""
    label = f'<label for="{control_id}">{_e(spec.label)}</label>'
    common = f'id="{control_id}" name="{_e(spec.name)}" data-control{aria}{invalid}'
    if spec.widget == "checkbox":
        checked = " checked" if spec.value is True else ""
        control = f'<input type="checkbox" {common}{checked}>'
        return (
            f'<div class="{classes} cc-check" data-field="{_e(spec.name)}" data-widget="checkbox">'
            f"{control}{label}{extra}</div>"
        )
    if spec.widget in ("dropdown", "tristate"):
        options = [("", "(not set)" if spec.widget == "tristate" else "(choose one)", True)]
        if spec.widget == "tristate":
            options += [("true", "yes", True), ("false", "no", True)]
        else:
            options += [(c.value, c.label, c.offered) for c in spec.choices]
        rendered = "".join(
            f'<option value="{_e(value)}"{" selected" if value == spec.value else ""}>'
            f"{'' if offered else '⚠️ '}{_e(text)}</option>"
            for value, text, offered in options
        )
        control = f"<select {common}{required}>{rendered}</select>"
    elif spec.widget in ("lines", "json") or spec.multiline:
        rows = max(2, min(10, str(spec.value).count("\n") + 1))
        hint = " (one item per line)" if spec.widget == "lines" else ""
        placeholder = f' placeholder="{_e(spec.placeholder or hint.strip(" ()"))}"' if spec.placeholder or hint else ""
        code = " cc-code" if spec.widget == "json" else ""
        control = f'<textarea class="cc-input{code}" rows="{rows}" {common}{required}{placeholder}>{_e(spec.value)}</textarea>'
    else:
        inputmode = {"integer": ' inputmode="numeric"', "number": ' inputmode="decimal"'}.get(spec.widget, "")
        placeholder = f' placeholder="{_e(spec.placeholder)}"' if spec.placeholder else ""
        control = (
            f'<input type="{_e(spec.input_type)}" class="cc-input" value="{_e(spec.value)}" {common}{required}'
            f'{inputmode}{placeholder} autocomplete="off">'
        )
    return (
        f'<div class="{classes}" data-field="{_e(spec.name)}" data-widget="{_e(spec.widget)}">'
        f"{label}{control}{extra}</div>"
    )


def _question_card(question: Question) -> str:
    """A server's question: a form with typed fields, or a link the person opens themselves; never a password box."""
    asked = question.elicitation
    head = (
        f'<header class="cc-card-head"><span class="cc-fn">❓ {_e(asked.server)} asks you</span>'
        f'{_origin(asked.server)}<span class="cc-state">{_e(f"while {question.function} runs")}</span></header>'
        f'<p class="cc-question-message">{_e(asked.message)}</p>'
    )
    if asked.warning:
        head += f'<p class="cc-warning" role="alert">⚠️ {_e(asked.warning)}</p>'
    if question.notice:
        head += f'<p class="cc-notice" role="alert">⚠️ {_e(question.notice)}</p>'
    expires = f"{asked.expires_at:%H:%M} UTC"
    if asked.mode == "url":
        body, answers = _question_link(asked.url or "")
    else:
        fields = form_fields(asked.spec, question.values, question.errors) if asked.spec is not None else []
        body = "".join(_field(asked.id, f) for f in fields)
        answers = [("accept", "Answer", " cc-primary"), ("decline", "Decline", ""), ("cancel", "Cancel", "")]
    buttons = "".join(
        f'<button type="button" class="cc-button{style}" data-answer="{action}">{label}</button>'
        for action, label, style in answers
    )
    body += (
        f'<p class="cc-help">The call waits for your answer. Decline says no; Cancel dismisses the question. '
        f"Without an answer by {_e(expires)} Callcard declines.</p>"
        f'<div class="cc-actions">{buttons}</div>'
    )
    return (
        f'<section class="cc-card cc-question-card" id="cc-question-{_e(asked.id)}" data-question="{_e(asked.id)}" '
        f'aria-label="{_e(f"Question from {asked.server}")}">{head}'
        f'<form class="cc-form" novalidate>{body}</form></section>'
    )


def _question_link(url: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The link of a URL-mode question, and its answers; only web addresses become links (never javascript: etc.)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problem = f"This is not a web address, so Callcard does not open it: {url}"
        refusals = [("decline", "Decline", ""), ("cancel", "Cancel", "")]
        return f'<p class="cc-field-error">⚠️ {_e(problem)}</p>', refusals
    link = (
        f'<p class="cc-question-link"><a href="{_e(url.strip())}" target="_blank" rel="noopener noreferrer">'
        f"Open {_e(parts.hostname or parts.netloc)} ↗</a></p>"
        f'<p class="cc-help">{_e(url.strip())}<br>Press Done once you have finished there.</p>'
    )
    return link, [("accept", "Done", " cc-primary"), ("decline", "Decline", "")]


def _settled_body(view: CallView) -> str:
    parts: list[str] = []
    if view.edited and view.proposed_arguments != view.arguments:
        parts.append(
            '<details class="cc-args"><summary>Arguments: proposed by the model, then edited</summary>'
            f'<p class="cc-caption">Proposed by the model</p><pre>{_e(_json(view.proposed_arguments))}</pre>'
            f'<p class="cc-caption">As confirmed</p><pre>{_e(_json(view.arguments))}</pre></details>'
        )
    else:
        shown = view.arguments if view.arguments else view.proposed_arguments
        parts.append(f'<details class="cc-args"><summary>Arguments</summary><pre>{_e(_json(shown))}</pre></details>')
    if view.status in (CallStatus.CONFIRMED, CallStatus.RUNNING):
        parts.append('<p class="cc-running-note">⏳ Running… the result appears here when the function returns.</p>')
    elif view.status == CallStatus.SUCCEEDED:
        text = _json(view.result)
        lines = text.count("\n") + 1
        folded = lines > _FOLD_LINES or len(text) > _FOLD_CHARS
        summary = f"Result ({lines:,} lines: click to open)" if folded else "Result"
        parts.append(
            f'<details class="cc-result"{"" if folded else " open"}><summary>{_e(summary)}</summary>'
            f"<pre>{_e(text)}</pre></details>"
        )
    elif view.status == CallStatus.REJECTED:
        reason = view.reject_reason or "none given"
        parts.append(f'<p class="cc-rejected">🚫 Rejected. Reason: {_e(reason)}</p>')
    elif view.status == CallStatus.SKIPPED:
        parts.append('<p class="cc-rejected">⏭️ Not run: you wrote a new message instead.</p>')
    if view.error:
        parts.append(f'<p class="cc-field-error">⚠️ {_e(view.error)}</p>')
    return "".join(parts)


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# The component shows an activity line (what is happening, for how long, and Stop) above the server's HTML. The line
# is shown by CSS while the deck's wrapper carries data-busy, which the browser code sets at a click and clears when
# the next deck value arrives: no server round trip before a person sees that something is happening.
DECK_TEMPLATE = (
    '<div class="cc-activity" role="status" aria-live="polite"><span class="cc-spinner" aria-hidden="true"></span>'
    '<span class="cc-activity-label">Working…</span><span class="cc-elapsed"></span>'
    '<button type="button" class="cc-button cc-small cc-stop">⏹ Stop</button></div>'
    "${value.html}"
)

DECK_JS = r"""
const box = element.closest('#cc-deck') || element;
let ticking = null;
let activity = 'Working…';
const newRun = () => Date.now().toString(36) + Math.random().toString(36).slice(2, 10);

// Looked up each time: a deck value that arrives while a reply runs redraws the activity line from the template.
function showActivity() {
  const labelNode = element.querySelector('.cc-activity-label');
  if (labelNode) labelNode.textContent = activity;
}

function setBusy(label) {
  const run = newRun();
  box.dataset.busy = '1';
  box.dataset.run = run;
  const started = Date.now();
  activity = label;
  showActivity();
  const elapsed = element.querySelector('.cc-elapsed');
  if (elapsed) elapsed.textContent = '';
  clearInterval(ticking);
  ticking = setInterval(() => {
    const seconds = Math.floor((Date.now() - started) / 1000);
    const node = element.querySelector('.cc-elapsed');
    if (node) node.textContent = seconds >= 1 ? ` ${seconds} s` : '';
  }, 1000);
  return run;
}

function setIdle() {
  delete box.dataset.busy;
  delete box.dataset.run;
  clearInterval(ticking);
  ticking = null;
}

// The textbox's send step calls this through window, so the activity line shows at the keypress.
window.callcardDeck = { busy: setBusy, idle: setIdle };

function fieldValues(card) {
  const values = {};
  card.querySelectorAll('[data-field]').forEach((field) => {
    const control = field.querySelector('[data-control]');
    if (!control) return;
    values[field.dataset.field] = field.dataset.widget === 'checkbox' ? control.checked : control.value;
  });
  return values;
}

const LABELS = {
  confirm: 'Running the function, then the model answers…',
  reject: 'Telling the model…',
  apply_json: 'Checking the JSON…',
  retry: 'The model is answering…',
  edit: 'Putting your message back in the box…',
  remove: 'Removing your message…',
};

element.addEventListener('submit', (event) => event.preventDefault());
element.addEventListener('input', (event) => {
  const field = event.target.closest('.cc-field');
  if (field && event.target.value) field.classList.remove('cc-missing');
  // A value the person changes is theirs from now on (the server says the same once it sees the values).
  const source = field && field.querySelector('.cc-source');
  if (source) {
    source.className = 'cc-source cc-source-person';
    source.textContent = '✏️ edited by a person';
  }
});
element.addEventListener('click', (event) => {
  // A server's question is answered while its call still runs (the deck is busy): its own buttons, its own event.
  const answer = event.target.closest('button[data-answer]');
  if (answer) {
    const card = answer.closest('[data-question]');
    if (!card) return;
    const data = { action: 'answer', question: card.dataset.question, answer: answer.dataset.answer };
    if (data.answer === 'accept') data.values = fieldValues(card);
    card.classList.add('cc-working');
    card.querySelectorAll('button[data-answer]').forEach((b) => { b.disabled = true; });
    trigger('click', data);
    return;
  }
  const stop = event.target.closest('.cc-stop');
  if (stop) {
    activity = 'Stopping…';
    showActivity();
    trigger('click', { action: 'stop', run: box.dataset.run || '' });
    return;
  }
  const button = event.target.closest('button[data-action]');
  if (!button || box.dataset.busy) return;
  const action = button.dataset.action;
  const card = button.closest('[data-call]');
  const data = { action, call_id: card ? card.dataset.call : null };
  if (action === 'confirm') data.values = fieldValues(card);
  if (action === 'reject') data.reason = (card.querySelector('.cc-reason') || {}).value || '';
  if (action === 'apply_json') data.text = (card.querySelector('.cc-json-text') || {}).value || '';
  if (card && action !== 'apply_json') card.classList.add('cc-working');
  data.run = setBusy(LABELS[action] || 'Working…');
  trigger('submit', data);
});

function arrived() {
  const value = props.value || {};
  if (!value.busy) {
    setIdle();
  } else if (box.dataset.busy) {
    if (value.activity) activity = value.activity;
    showActivity();
  }
  if (value.reset) {
    const form = element.querySelector(`[data-call="${CSS.escape(value.reset)}"] form`);
    if (form) form.reset();
  }
  if (value.focus) {
    const key = CSS.escape(value.focus);
    const card = element.querySelector(`[data-call="${key}"], [data-question="${key}"]`);
    if (card) {
      const actions = card.querySelector('.cc-actions');
      const fits = card.getBoundingClientRect().height < window.innerHeight * 0.8;
      (fits ? card : actions || card).scrollIntoView({ block: fits ? 'nearest' : 'end', behavior: 'smooth' });
    }
  }
}
watch('value', arrived);
"""

DECK_CSS = """
#cc-deck { border-width: 0 !important; background: transparent; padding: 0; box-shadow: none;
  --cc-muted: #4b5563; --cc-warn: #92400e; --cc-error: #b91c1c; }
.dark #cc-deck { --cc-muted: #d1d5db; --cc-warn: #fbbf24; --cc-error: #f87171; }
#cc-deck .cc-activity { display: flex; gap: 8px; align-items: center; padding: 6px 10px; margin: 4px 0;
  border-radius: var(--radius-lg); background: var(--background-fill-secondary); color: var(--body-text-color);
  font-size: var(--text-md); }
#cc-deck:not([data-busy]) .cc-activity { display: none; }
#cc-deck .cc-elapsed { font-variant-numeric: tabular-nums; }
#cc-deck .cc-stop { margin-left: auto; }
#cc-deck .cc-spinner { display: inline-block; flex: none; width: 14px; height: 14px; border-radius: 50%;
  border-width: 2px; border-style: solid; border-color: var(--color-accent) var(--border-color-primary)
  var(--border-color-primary); animation: cc-spin 0.8s linear infinite; }
@keyframes cc-spin { to { transform: rotate(360deg); } }
@media (prefers-reduced-motion: reduce) { #cc-deck .cc-spinner { animation: none; } }
#cc-deck[data-busy] .cc-card:not(.cc-question-card) button, #cc-deck[data-busy] .cc-panel button {
  pointer-events: none; opacity: 0.5; }
#cc-deck .cc-question-card button:disabled { opacity: 0.5; }
#cc-deck .cc-card, #cc-deck .cc-panel { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  padding: 10px 12px; margin: 8px 0; background: var(--block-background-fill); color: var(--body-text-color); }
#cc-deck .cc-panel { border-left: 4px solid #dc2626; }
#cc-deck .cc-panel-title { font-weight: 600; margin: 0 0 4px; }
#cc-deck .cc-panel-error { margin: 0 0 8px; }
#cc-deck .cc-card-proposed { border-left: 4px solid var(--color-accent); }
#cc-deck .cc-card-succeeded { border-left: 4px solid #16a34a; }
#cc-deck .cc-card-failed, #cc-deck .cc-card-interrupted { border-left: 4px solid #dc2626; }
#cc-deck .cc-card-rejected, #cc-deck .cc-card-skipped { border-left: 4px solid #9ca3af; }
#cc-deck .cc-card-running, #cc-deck .cc-card-confirmed { border-left: 4px solid #f59e0b; }
#cc-deck .cc-question-card { border-left: 4px solid var(--color-accent);
  box-shadow: 0 0 0 2px var(--color-accent-soft); }
#cc-deck .cc-origin { font-size: var(--text-sm); padding: 0 8px; border-radius: 999px; color: var(--cc-muted);
  border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary); }
#cc-deck .cc-warning { color: var(--cc-warn); font-weight: 600; font-size: var(--text-sm); margin: 4px 0; }
#cc-deck .cc-question-message { white-space: pre-wrap; overflow-wrap: anywhere; margin: 6px 0; font-weight: 600; }
#cc-deck .cc-question-link a { font-weight: 600; color: var(--link-text-color); text-decoration: underline; }
#cc-deck .cc-card-head { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: baseline; }
#cc-deck .cc-fn { font-weight: 700; font-family: var(--font-mono); overflow-wrap: anywhere; }
#cc-deck .cc-desc, #cc-deck .cc-help, #cc-deck .cc-caption { color: var(--cc-muted); font-size: var(--text-sm);
  margin: 2px 0 6px; }
#cc-deck .cc-state, #cc-deck .cc-elapsed, #cc-deck .cc-rejected { color: var(--cc-muted); }
#cc-deck .cc-field { display: flex; flex-direction: column; gap: 2px; margin: 8px 0; padding: 4px 6px;
  border-radius: var(--radius-md); }
#cc-deck .cc-field label { font-weight: 600; font-size: var(--text-sm); }
#cc-deck .cc-check { flex-direction: row; flex-wrap: wrap; align-items: center; gap: 6px; }
#cc-deck .cc-check .cc-help, #cc-deck .cc-check .cc-ask, #cc-deck .cc-check .cc-field-error { flex-basis: 100%; }
#cc-deck input[type=text], #cc-deck input[type=email], #cc-deck input[type=url], #cc-deck select, #cc-deck textarea {
  width: 100%; box-sizing: border-box; padding: 6px 8px; border-radius: var(--radius-md);
  border: 1px solid var(--border-color-primary); background: var(--input-background-fill);
  color: var(--body-text-color); font: inherit; }
#cc-deck ::placeholder { color: var(--input-placeholder-color); opacity: 1; }
#cc-deck select { appearance: auto; }
#cc-deck input[type=checkbox] { appearance: auto; width: 18px; height: 18px; margin: 0; accent-color: var(--color-accent); }
#cc-deck textarea { field-sizing: content; min-height: 2.4em; resize: vertical; }
#cc-deck .cc-code, #cc-deck .cc-json-text, #cc-deck pre { font-family: var(--font-mono); font-size: var(--text-sm); }
#cc-deck pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; padding: 6px 8px;
  background: var(--background-fill-secondary); border-radius: var(--radius-md); max-height: 24em; overflow: auto; }
#cc-deck .cc-missing { background: rgba(245, 158, 11, 0.12); }
#cc-deck .cc-missing .cc-input, #cc-deck .cc-missing select { box-shadow: inset 0 0 0 2px #f59e0b; }
#cc-deck .cc-ask { color: var(--cc-warn); font-size: var(--text-sm); margin: 2px 0; font-weight: 600; }
#cc-deck .cc-source { color: var(--cc-muted); font-size: var(--text-xs); margin: 2px 0; }
#cc-deck .cc-source-model { color: var(--cc-warn); font-weight: 600; }
#cc-deck .cc-field-error, #cc-deck .cc-notice { color: var(--cc-error); font-size: var(--text-sm); margin: 2px 0; }
#cc-deck .cc-notice { font-weight: 600; }
#cc-deck input:user-invalid, #cc-deck [aria-invalid=true] { border-color: var(--cc-error); }
#cc-deck .cc-reason { margin-top: 8px; }
#cc-deck .cc-actions { display: flex; gap: 8px; margin-top: 8px; flex-wrap: wrap; }
#cc-deck .cc-button { padding: 6px 16px; border-radius: var(--radius-md); border: 1px solid var(--button-secondary-border-color);
  background: var(--button-secondary-background-fill); color: var(--button-secondary-text-color); font-weight: 600;
  cursor: pointer; }
#cc-deck .cc-primary { background: var(--button-primary-background-fill); color: var(--button-primary-text-color);
  border-color: var(--button-primary-border-color); }
#cc-deck .cc-stop-button { background: var(--button-cancel-background-fill); color: var(--button-cancel-text-color);
  border-color: var(--button-cancel-border-color, transparent); }
#cc-deck .cc-small { padding: 3px 10px; font-size: var(--text-sm); }
#cc-deck details summary { cursor: pointer; font-size: var(--text-sm); margin: 4px 0; }
#cc-deck .cc-running-note, #cc-deck .cc-working .cc-actions::after { color: var(--cc-warn); font-weight: 600; }
#cc-deck .cc-working .cc-actions::after { content: "⏳ Working…"; align-self: center; }
"""
