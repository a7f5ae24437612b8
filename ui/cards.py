"""Call cards: one editable form per proposed call (a widget per argument, inline errors, Confirm / Reject / edit as
JSON), and a read-only card once the call runs (running, then its result or error). Built inside `@gr.render`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from backend.engine import CallView
from backend.store import CallStatus
from backend.validation import validate_arguments
from ui.present import (
    FieldView,
    arguments_from_fields,
    arguments_from_json,
    arguments_json,
    card_fields,
    check_fields,
    field_errors,
    format_result,
    md_code,
    md_text,
    status_label,
)

__all__ = ["CardWiring", "render_card"]

_UI_KEYS = ("rev", "busy", "notice")  # what a card dict holds besides the CallView

# (call id, arguments, conversation id, cards, request, profile) -> the page's chat outputs, update by update.
ConfirmStream = Callable[..., AsyncIterator[tuple[Any, ...]]]
# (call id, reason, conversation id, cards, request, profile) -> the same.
RejectStream = Callable[..., AsyncIterator[tuple[Any, ...]]]


@dataclass(frozen=True)
class CardWiring:
    """What a card's buttons need from the page: the states they read, where their updates go, what they call."""

    conversation_id: gr.BrowserState
    cards: gr.State
    outputs: list[Any]
    confirm: ConfirmStream
    reject: RejectStream
    settle: dict[str, Any]  # the follow-up event that shows a stream's final view again


def render_card(card: dict[str, Any], wiring: CardWiring) -> None:
    """Build one card (inside `@gr.render`)."""
    view = CallView.model_validate({k: v for k, v in card.items() if k not in _UI_KEYS})
    with gr.Column(
        variant="panel", elem_classes=["cc-card", f"cc-card-{view.status}"], elem_id=f"cc-card-{view.id}",
        key=f"card-{view.id}",
    ):
        gr.Markdown(_header(view), elem_classes=["cc-card-header"], key=f"head-{view.id}-{view.status}")
        with gr.Group():
            if view.status == CallStatus.PROPOSED:
                _open_card(view, int(card.get("rev", 0)), bool(card.get("busy")), str(card.get("notice") or ""), wiring)
            else:
                _settled_card(view)


def _header(view: CallView) -> str:
    text = f"#### 🛠️ {md_code(view.function)} · {status_label(view)}"
    if view.description:
        text += f"\n{md_text(view.description)}"
    return text


def _open_card(view: CallView, rev: int, busy: bool, notice: str, wiring: CardWiring) -> None:
    fields = card_fields(view)
    prefix = f"{view.id}-{rev}"
    grouped = field_errors(view.errors)
    known = {f.name for f in fields}
    general = " ".join([notice, *(message for key, message in grouped.items() if key not in known)]).strip()
    card_error = gr.Markdown(
        _error_text(general), visible=bool(general), elem_classes=["cc-error"], key=f"{prefix}-error",
        preserved_by_key=None,
    )
    widgets: list[Any] = []
    error_boxes: list[Any] = []
    for spec_field in fields:
        with gr.Column(elem_classes=["cc-field", "cc-missing"] if spec_field.missing else ["cc-field"]):
            widgets.append(_widget(spec_field, f"{prefix}-{spec_field.name}"))
            if spec_field.missing:
                ask = f"❓ **The model asks for the {md_text(spec_field.label.rstrip(' *'))}**"
                gr.Markdown(ask + (f": {md_text(spec_field.help)}" if spec_field.help else "."), elem_classes=["cc-ask"])
            error_boxes.append(gr.Markdown(
                _error_text(spec_field.error), visible=bool(spec_field.error), elem_classes=["cc-error"],
                key=f"{prefix}-{spec_field.name}-error", preserved_by_key=None,
            ))
    with gr.Accordion("Edit as JSON", open=False, key=f"{prefix}-json-box"):
        json_box = gr.Code(
            arguments_json(view), language="json", interactive=True, lines=4, show_label=False, key=f"{prefix}-json",
        )
        json_error = gr.Markdown(visible=False, elem_classes=["cc-error"], key=f"{prefix}-json-error", preserved_by_key=None)
        apply_json = gr.Button("Apply JSON to the fields", size="sm", key=f"{prefix}-apply")
    reason = gr.Textbox(
        placeholder="Reason for rejecting (optional; the model is told)", show_label=False, lines=1, max_lines=3,
        interactive=True, key=f"{view.id}-reason", elem_classes=["cc-reason"],
    )
    with gr.Row():
        confirm = gr.Button("Confirm", variant="primary", interactive=not busy, key=f"{view.id}-confirm")
        reject = gr.Button("Reject", variant="stop", interactive=not busy, key=f"{view.id}-reject")

    def check(*values: Any) -> list[Any]:
        _arguments, errors = check_fields(view, values)
        grouped_now = field_errors(errors)
        rest = " ".join(m for k, m in grouped_now.items() if k not in known)
        updates = [gr.update(value=_error_text(grouped_now.get(f.name, "")), visible=f.name in grouped_now) for f in fields]
        return [gr.update(value=_error_text(rest), visible=bool(rest)), *updates]

    for spec_field, widget in zip(fields, widgets, strict=True):
        trigger = widget.input if spec_field.widget in ("checkbox", "tristate", "dropdown") else widget.blur
        trigger(check, inputs=widgets, outputs=[card_error, *error_boxes], queue=False, show_progress="hidden")

    async def on_confirm(
        conversation_id: str | None, cards: list[dict[str, Any]], request: gr.Request,
        profile: gr.OAuthProfile | None, *values: Any,
    ) -> AsyncIterator[tuple[Any, ...]]:
        arguments, _problems = arguments_from_fields(view, values)
        _normalised, errors = check_fields(view, values)
        if errors:
            # Shown on the card before anything runs; the fields keep what the person typed (same keys).
            names = ", ".join(sorted({key.split(".")[0].split("[")[0].replace("_", " ") or "the call" for key in errors}))
            notice = f"Nothing ran: check {names} first."
            marked = [{**c, "errors": errors, "notice": notice} if c["id"] == view.id else c for c in cards]
            yield gr.skip(), marked, {"text": None}  # the follow-up event only gives the textbox back
            return
        async for update in wiring.confirm(view.id, arguments, conversation_id, cards, request, profile):
            yield update

    async def on_reject(
        conversation_id: str | None, cards: list[dict[str, Any]], reason_text: str, request: gr.Request,
        profile: gr.OAuthProfile | None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        async for update in wiring.reject(view.id, reason_text, conversation_id, cards, request, profile):
            yield update

    def on_apply(cards: list[dict[str, Any]], text: str) -> tuple[Any, Any]:
        arguments, problem = arguments_from_json(text)
        if arguments is None:
            return gr.skip(), gr.update(value=_error_text(problem or ""), visible=True)
        errors, missing = ({}, [])
        if view.spec is not None:
            _normalised, errors, missing = validate_arguments(view.spec, arguments)
        updated = [
            {**c, "arguments": arguments, "errors": errors, "missing": missing, "rev": int(c.get("rev", 0)) + 1}
            if c["id"] == view.id else c
            for c in cards
        ]
        return updated, gr.update(value="", visible=False)

    confirm.click(
        on_confirm, inputs=[wiring.conversation_id, wiring.cards, *widgets], outputs=wiring.outputs,
        show_progress="hidden", js=_busy_js(view.id, 2 + len(widgets)),
    ).then(**wiring.settle)
    reject.click(
        on_reject, inputs=[wiring.conversation_id, wiring.cards, reason], outputs=wiring.outputs,
        show_progress="hidden", js=_busy_js(view.id, 3),
    ).then(**wiring.settle)
    apply_json.click(on_apply, inputs=[wiring.cards, json_box], outputs=[wiring.cards, json_error], show_progress="hidden")


def _busy_js(call_id: str, inputs: int) -> str:
    """Browser code run on Confirm / Reject: every card's buttons off, this card marked running (no re-render)."""
    card_id = json.dumps(f"cc-card-{call_id}")
    return f"""(...args) => {{
  const area = document.getElementById("cc-cards");
  if (area) {{ area.dataset.busy = "1"; }}
  document.getElementById({card_id})?.classList.add("cc-running");
  return args.slice(0, {inputs});
}}"""


def _widget(spec_field: FieldView, key: str) -> Any:
    # `info` is shown as plain text (measured in the browser), so it takes the description as it is.
    help_text = spec_field.help or None
    classes = ["cc-missing-input"] if spec_field.missing else []
    common: dict[str, Any] = {"label": spec_field.label, "interactive": True, "key": key, "elem_classes": classes}
    if spec_field.widget == "text":
        return gr.Textbox(value=spec_field.value, info=help_text, lines=1, max_lines=6, **common)
    if spec_field.widget == "integer":
        return gr.Number(value=spec_field.value, info=help_text, precision=0, **common)
    if spec_field.widget == "number":
        return gr.Number(value=spec_field.value, info=help_text, **common)
    if spec_field.widget == "checkbox":
        return gr.Checkbox(value=spec_field.value, info=help_text, **common)
    if spec_field.widget in ("dropdown", "tristate"):
        return gr.Dropdown(choices=spec_field.choices, value=spec_field.value, info=help_text, **common)
    if spec_field.widget == "lines":
        info = (help_text + " " if help_text else "") + "One item per line."
        return gr.Textbox(value=spec_field.value, info=info, lines=3, max_lines=12, **common)
    code = gr.Code(value=spec_field.value, language="json", lines=3, **common)
    if help_text:
        gr.Markdown(md_text(help_text), elem_classes=["cc-help"])
    return code


def _settled_card(view: CallView) -> None:
    shown_arguments = view.arguments if view.arguments else view.proposed_arguments
    if view.edited and view.proposed_arguments != view.arguments:
        with gr.Accordion("Arguments: proposed by the model, then edited", open=False):
            gr.Code(_json(view.proposed_arguments), language="json", interactive=False, label="Proposed by the model")
            gr.Code(_json(view.arguments), language="json", interactive=False, label="As confirmed")
    else:
        with gr.Accordion("Arguments", open=False):
            gr.Code(_json(shown_arguments), language="json", interactive=False, show_label=False)
    if view.status in (CallStatus.CONFIRMED, CallStatus.RUNNING):
        gr.Markdown("⏳ Running… the result appears here when the function returns.", elem_classes=["cc-running"])
    elif view.status == CallStatus.SUCCEEDED:
        text, folded = format_result(view.result)
        lines = text.count("\n") + 1
        label = f"Result ({lines:,} lines, folded: click to open)" if folded else "Result"
        with gr.Accordion(label, open=not folded, elem_classes=["cc-result"]):
            gr.Code(text, language="json", interactive=False, show_label=False, max_lines=40)
    elif view.status == CallStatus.REJECTED:
        reason = md_text(view.reject_reason) if view.reject_reason else "none given"
        gr.Markdown(f"🚫 **Rejected.** Reason: {reason}", elem_classes=["cc-rejected"])
    if view.error:
        gr.Markdown(_error_text(view.error), elem_classes=["cc-error"])


def _error_text(message: str) -> str:
    return f"⚠️ {md_text(message)}" if message else ""


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
