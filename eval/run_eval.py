"""Function-calling accuracy on BFCL data through Callcard's whole pipeline: prompt, backend, parser, validation.

    python -m eval.run_eval --backend embedded --mode grammar --n 40 --baseline

Each case is scored like BFCL's AST checker (every argument value among the acceptable ones, loose string matching),
and every failure is put where it happened: no call, unparseable, schema-invalid, wrong function, wrong arguments,
wrong number of calls, or a call where none was wanted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backend.core.calls import FunctionCall
from backend.core.parsing import parse_reply
from backend.core.provenance import Evidence, trace_arguments, ungrounded_required
from backend.core.validation import CALL_ERROR_KEY, validate_call
from backend.models.protocol import GenerationParams, ModelBackend, ReplyDone, TextDelta
from eval.bfcl import CATEGORIES as BFCL_CATEGORIES
from eval.bfcl import TestCase, check_calls, load_cases
from eval.support_scenarios import ASKS, WRITES, load_scenarios
from eval.support_scenarios import CATEGORY as SUPPORT

_log = logging.getLogger("eval")

CATEGORIES = (*BFCL_CATEGORIES, SUPPORT)
DEFAULT_CATEGORIES = ("simple_python", "multiple", "parallel", "live_simple", "irrelevance", SUPPORT)
OUTCOMES = (
    "ok", "no_call", "asked", "unparseable", "schema_invalid", "wrong_function", "wrong_arguments", "wrong_count",
    "called_irrelevant", "write_for_a_read",
)


@dataclass
class CaseResult:
    """What happened to one test case."""

    id: str
    category: str
    system: str
    outcome: str
    detail: str
    reply: str
    calls: list[dict[str, Any]]
    seconds: float


def score_reply(
    case: TestCase, text: str, structured: list[FunctionCall], *, ask: bool = False,
) -> tuple[str, str, list[dict[str, Any]]]:
    """(outcome, detail, calls) for a reply: parsed, validated, then checked against the case's answers.

    With `ask`, Callcard's CALLCARD_UNGROUNDED=ask is applied first: a required value found nowhere in the request
    is withheld, so the card would ask for it ("asked": no call runs with it).
    """
    parsed = parse_reply(text)
    calls = [*structured, *parsed.calls]
    shown = [{"name": c.name, "arguments": c.arguments} for c in calls]
    writes = [c.name for c in calls if c.name in WRITES]
    if case.category == SUPPORT and writes and not _asks_for_a_write(case):
        return "write_for_a_read", ", ".join(writes), shown
    withheld = _withheld(case, calls) if ask else {}
    if case.id in ASKS:  # no call, or a card for the right function that asks for every required value
        if not calls or all(c.name in ASKS[case.id] and _asks_all(case, c, withheld) for c in calls):
            return "ok", "", shown
        return "called_irrelevant", ", ".join(c.name for c in calls), shown
    if case.answers is None:
        if calls:
            return "called_irrelevant", ", ".join(c.name for c in calls), shown
        return "ok", "", shown
    if any(withheld.values()):
        return "asked", "; ".join(f"{name}: {', '.join(v)}" for name, v in withheld.items() if v), shown
    if not calls:
        if parsed.problems:
            return "unparseable", "; ".join(parsed.problems), shown
        return "no_call", "", shown
    checked = []
    for call in calls:
        validated = validate_call(call, case.functions)
        if CALL_ERROR_KEY in validated.errors:
            return "wrong_function", validated.errors[CALL_ERROR_KEY], shown
        if not validated.ok:
            return "schema_invalid", f"{call.name}: {validated.errors}", shown
        # Only the values the model gave count: the defaults the validator fills in are not the model's answer, and
        # a blank value is no answer (the validator treats it as not given, BFCL accepts it where "" is allowed).
        given = {k: validated.arguments[k] for k, v in call.arguments.items() if k in validated.arguments and not _blank(v)}
        checked.append((call.name, given))
    outcome, detail = check_calls(checked, case.answers)
    return outcome, detail, shown


def _withheld(case: TestCase, calls: list[FunctionCall]) -> dict[str, list[str]]:
    """Per call, the required values `ask` would withhold: found nowhere in what the user wrote."""
    evidence = [Evidence(kind="user", text=m.text) for m in case.messages if m.role == "user"]
    specs = {spec.name: spec for spec in case.functions}
    return {
        call.name: ungrounded_required(specs[call.name], trace_arguments(call.arguments, evidence, specs[call.name]))
        for call in calls if call.name in specs
    }


def _asks_all(case: TestCase, call: FunctionCall, withheld: dict[str, list[str]]) -> bool:
    """Every required argument of `call` is left for the person: blank, or withheld as found nowhere."""
    spec = next((s for s in case.functions if s.name == call.name), None)
    if spec is None:
        return False
    required = [a.name for a in spec.arguments if a.required and not a.has_default]
    return all(_blank(call.arguments.get(name)) or name in withheld.get(call.name, []) for name in required)


def _asks_for_a_write(case: TestCase) -> bool:
    """The customer asked for a change: the expected answer (or the ask case's function) writes."""
    if case.id in ASKS:
        return bool(ASKS[case.id] & WRITES)
    return bool(case.answers) and any(name in WRITES for answer in case.answers or [] for name in answer)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


async def run_backend(backend: ModelBackend, case: TestCase, params: GenerationParams) -> tuple[str, list[FunctionCall]]:
    """The reply's text and any structured calls, through the backend's streaming interface."""
    parts: list[str] = []
    structured: list[FunctionCall] = []
    async for event in backend.stream(case.messages, case.functions, system=case.system, params=params):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, ReplyDone):
            structured = list(event.calls)
    return "".join(parts), structured


class Baseline:
    """llama-cpp-python's own function calling (`chat_format="chatml-function-calling"`, tool_choice auto)."""

    def __init__(self, model_path: str, max_tokens: int) -> None:
        import llama_cpp

        self._llm = llama_cpp.Llama(
            model_path=model_path, n_ctx=4096, chat_format="chatml-function-calling", flash_attn=True, verbose=False,
        )
        self._max_tokens = max_tokens

    def reply(self, case: TestCase) -> tuple[str, list[FunctionCall]]:
        # Its template lists the tools inside the system message only, so a case without one gets a plain one.
        messages = [
            {"role": "system", "content": case.system or "You are a helpful assistant."},
            *({"role": m.role, "content": m.text} for m in case.messages),
        ]
        tools = [spec.to_openai_tool() for spec in case.functions]
        try:
            response = self._llm.create_chat_completion(
                messages=messages, tools=tools, tool_choice="auto", temperature=0.0, max_tokens=self._max_tokens,
            )
        except ValueError as error:  # a prompt that does not fit its context: scored as no answer, the run goes on
            _log.warning("baseline could not answer %s: %s", case.id, error)
            return "", []
        message = response["choices"][0]["message"]
        calls: list[FunctionCall] = []
        text = message.get("content") or ""
        for tool_call in message.get("tool_calls") or []:
            arguments = tool_call["function"]["arguments"]
            try:
                decoded = json.loads(arguments) if isinstance(arguments, str) else arguments
            except ValueError:
                text += f"\n<tool_call>{arguments}"  # left for the parser to report as unreadable
                continue
            calls.append(FunctionCall(name=tool_call["function"]["name"], arguments=decoded or {}))
        return text, calls


def make_backend(args: argparse.Namespace, params: GenerationParams) -> ModelBackend:
    """The backend named on the command line."""
    if args.backend == "embedded":
        from backend.models.embedded import EmbeddedBackend

        options: dict[str, Any] = {}
        if args.threshold is not None:
            options["relevance_threshold"] = None if args.threshold.lower() == "none" else float(args.threshold)
        if args.grounded != "auto":
            options["grounded_optional"] = args.grounded == "on"
        return EmbeddedBackend(args.model_path, style=args.style, params=params, call_mode=args.mode, **options)
    if not args.endpoint:
        raise SystemExit(f"--backend {args.backend} needs --endpoint")
    if args.backend == "tgi":
        from backend.models.tgi import TGIBackend

        return TGIBackend(args.endpoint, style=args.style or "llama2", params=params, call_mode=args.mode)
    from backend.models.openai_compat import OpenAIBackend

    return OpenAIBackend(args.endpoint, model=args.model, params=params)


async def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run every system on every category; the results as a JSON-ready dict."""
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=0.0, repetition_penalty=1.0, seed=0)
    cases = {
        c: (load_scenarios() if c == SUPPORT else load_cases(c, args.offset + args.n))[args.offset : args.offset + args.n]
        for c in args.categories
    }
    systems: dict[str, Any] = {}
    if not args.baseline_only:
        backend = make_backend(args, params)
        info = await backend.info()
        label = f"callcard-{args.mode}"
        asking = f"{label} + ungrounded=ask"  # the same replies, scored as the demo model's cards would ask
        systems[label] = {"info": info.model_dump(), "results": []}
        systems[asking] = {"info": info.model_dump(), "results": []}
        for category, items in cases.items():
            for case in items:
                started = time.perf_counter()
                text, structured = await run_backend(backend, case, params)
                seconds = time.perf_counter() - started
                for name, ask in ((label, False), (asking, True)):
                    outcome, detail, calls = score_reply(case, text, structured, ask=ask)
                    systems[name]["results"].append(
                        CaseResult(case.id, category, name, outcome, detail, text, calls, seconds)
                    )
            _log_category(label, category, systems[label]["results"])
    if args.baseline or args.baseline_only:
        from backend.models.embedded import bundled_model_path

        baseline = Baseline(str(args.model_path or bundled_model_path()), args.max_new_tokens)
        label = "llama-cpp-python chatml-function-calling"
        systems[label] = {"info": {"chat_format": "chatml-function-calling"}, "results": []}
        for category, items in cases.items():
            for case in items:
                started = time.perf_counter()
                text, structured = await asyncio.to_thread(baseline.reply, case)
                outcome, detail, calls = score_reply(case, text, structured)
                systems[label]["results"].append(
                    CaseResult(case.id, category, label, outcome, detail, text, calls, time.perf_counter() - started)
                )
            _log_category(label, category, systems[label]["results"])
    return {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "systems": {
            name: {**body, "results": [asdict(r) for r in body["results"]]} for name, body in systems.items()
        },
    }


def _log_category(label: str, category: str, results: list[CaseResult]) -> None:
    mine = [r for r in results if r.category == category]
    right = sum(r.outcome == "ok" for r in mine)
    _log.info("%s %s: %d/%d (%.0f s)", label, category, right, len(mine), sum(r.seconds for r in mine))


def table(report: dict[str, Any]) -> str:
    """Accuracy per category and system, then where the failures happened."""
    lines = []
    categories = report["settings"]["categories"]
    header = f"{'system':44} " + " ".join(f"{c:>14}" for c in categories)
    lines += [header, "-" * len(header)]
    for name, body in report["systems"].items():
        cells = []
        for category in categories:
            mine = [r for r in body["results"] if r["category"] == category]
            right = sum(r["outcome"] == "ok" for r in mine)
            cells.append(f"{100 * right / len(mine):13.1f}%" if mine else f"{'-':>14}")
        lines.append(f"{name:44} " + " ".join(cells))
    lines.append("")
    for name, body in report["systems"].items():
        lines.append(f"Failures of {name}:")
        for category in categories:
            counts = Counter(r["outcome"] for r in body["results"] if r["category"] == category)
            counts.pop("ok", None)
            listed = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: OUTCOMES.index(kv[0])))
            lines.append(f"  {category:14} {listed or 'none'}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["embedded", "tgi", "openai"], default="embedded")
    parser.add_argument("--mode", choices=["grammar", "parse"], default="grammar")
    parser.add_argument("--categories", default=",".join(DEFAULT_CATEGORIES),
                        help=f"comma-separated, from: {', '.join(CATEGORIES)}")
    parser.add_argument("--n", type=int, default=40, help="cases per category (the first N)")
    parser.add_argument("--offset", type=int, default=0, help="skip this many cases first (held-out tuning)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--baseline", action="store_true", help="also run llama-cpp-python's chatml-function-calling")
    parser.add_argument("--baseline-only", action="store_true", help="run only the baseline")
    parser.add_argument("--model-path", type=Path, help="a GGUF file (default: the bundled SmolLM2-135M)")
    parser.add_argument("--style", choices=["llama2", "mistral", "native"])
    parser.add_argument("--threshold", help="embedded relevance threshold: a number, or none (default: the model's)")
    parser.add_argument("--grounded", choices=["auto", "on", "off"], default="auto",
                        help="embedded: keep only optional argument values the request mentions (default: the model's)")
    parser.add_argument("--endpoint", help="server URL for --backend tgi / openai")
    parser.add_argument("--model", help="model name for --backend openai")
    parser.add_argument("--out", type=Path, help="where to write the JSON results (default: eval/results/...)")
    args = parser.parse_args(argv)
    args.categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    unknown = set(args.categories) - set(CATEGORIES)
    if unknown:
        parser.error(f"unknown categories {sorted(unknown)}")
    return args


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    report = asyncio.run(evaluate(args))
    out = args.out or Path("eval/results") / f"{args.backend}-{args.mode}-n{args.n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    sys.stdout.write(table(report))
    sys.stdout.write(f"\nResults: {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
