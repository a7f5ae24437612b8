"""Callcard: wires settings, store, model backend, tools, engine and UI together, then serves the app."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from contextlib import ExitStack
from datetime import timedelta
from typing import TYPE_CHECKING, NoReturn

from backend.errors import CallcardError
from backend.models.protocol import GenerationParams, ModelBackend
from backend.settings import Settings, load_settings

if TYPE_CHECKING:
    from backend.storage.store import Store
    from backend.tools.mcp_servers import McpServers

_DAY_S = 24 * 60 * 60


def parse_flags(argv: list[str]) -> dict[str, object]:
    """Command-line flags; each one overrides the CALLCARD_* environment variable of the same name."""
    parser = argparse.ArgumentParser(description="Callcard: a chat for function-calling models.")
    parser.add_argument("--backend", choices=["embedded", "tgi", "openai"])
    parser.add_argument("--endpoint", help="model server URL (TGI or OpenAI-compatible)")
    parser.add_argument("--model-path", help="a GGUF file for the embedded backend")
    parser.add_argument("--prompt-style", choices=["llama2", "mistral", "native"])
    parser.add_argument("--data-dir", help="where the SQLite files live (default ./data)")
    parser.add_argument("--database-url", help="a SQLAlchemy URL, e.g. postgresql+psycopg://...")
    parser.add_argument("--tools", help="a Python file of @tool functions")
    parser.add_argument("--http-tools", help="a YAML or JSON file of HTTP tools")
    parser.add_argument("--functions", help="a Trelis functionList or OpenAI tools JSON file")
    parser.add_argument("--mcp-servers", help="an mcpServers JSON or YAML file of MCP servers")
    flags = vars(parser.parse_args(argv))
    return {key: value for key, value in flags.items() if value is not None}


def generation_params(settings: Settings) -> GenerationParams:
    return GenerationParams(
        max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_p=settings.top_p,
        top_k=settings.top_k, repetition_penalty=settings.repetition_penalty,
    )


def model_backend(settings: Settings, params: GenerationParams) -> ModelBackend:
    """The model client the settings ask for (each module imports its own client library)."""
    if settings.backend == "tgi":
        from backend.models.tgi import TGIBackend

        return TGIBackend(
            settings.endpoint, token=settings.token, timeout=settings.timeout_s,
            connect_timeout=settings.connect_timeout_s, style=settings.prompt_style or "llama2", params=params,
            call_mode=settings.call_mode, retries=settings.retries,
        )
    if settings.backend == "openai":
        from backend.models.openai_compat import OpenAIBackend

        return OpenAIBackend(
            settings.endpoint, api_key=settings.token, model=settings.model_name, timeout=settings.timeout_s,
            params=params, retries=settings.retries,
        )
    from backend.models.embedded import EmbeddedBackend

    return EmbeddedBackend(
        model_path=settings.model_path, style=settings.prompt_style, params=params, call_mode=settings.call_mode,
    )


def mcp_servers(settings: Settings) -> McpServers | None:
    """The servers of CALLCARD_MCP_SERVERS, not yet started (build_registry starts them); None without the file."""
    if settings.mcp_servers is None:
        return None
    from backend.tools.mcp_servers import McpServers  # the MCP SDK loads only when servers are configured

    return McpServers.from_file(settings.mcp_servers)


def purge_expired(store: Store, days: int) -> None:
    """Apply CALLCARD_RETENTION_DAYS now, then once a day while the app runs."""
    from backend.storage.tables import utcnow

    purged = store.purge_older_than(utcnow() - timedelta(days=days))
    logging.info("retention: purged %d conversation(s) last changed over %d days ago, with their audit rows",
                 purged, days)
    timer = threading.Timer(_DAY_S, purge_expired, args=(store, days))
    timer.daemon = True
    timer.start()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stack = ExitStack()  # what must stop with the app, whichever way it ends
    try:
        settings = load_settings(**parse_flags(argv))
        from backend.engine import Engine, Limits
        from backend.engine.rate_limits import RateLimits
        from backend.storage.store import Store
        from backend.tools import SupportDesk, build_registry

        store = Store(settings.database) if settings.database_url else Store.in_data_dir(settings.data_dir)
        interrupted = store.interrupt_unfinished_calls()
        if interrupted:
            logging.warning("%d call(s) were running when Callcard stopped; marked interrupted", len(interrupted))
        desk = SupportDesk(settings.data_dir)
        mcp = mcp_servers(settings)
        if mcp is not None:
            stack.callback(mcp.close)  # stdio servers' processes end with the app
        registry = build_registry(
            support_desk=desk, python_tools=settings.tools, http_tools=settings.http_tools,
            function_list=settings.functions, auto_tools=settings.auto_tool_names,
            disabled_tools=settings.disabled_tool_names, max_result_bytes=settings.max_result_bytes,
            mcp_servers=mcp,
        )
        params = generation_params(settings)
        engine = Engine(
            store=store, backend=model_backend(settings, params), registry=registry, params=params,
            system_prompt=settings.system_prompt,
            limits=Limits(
                max_message_chars=settings.max_message_chars, max_calls_per_reply=settings.max_calls_per_reply,
                max_calls_per_turn=settings.max_calls_per_turn,
            ),
            rate_limits=RateLimits(
                messages_per_minute=settings.messages_per_minute, concurrent_replies=settings.concurrent_replies,
            ),
            ungrounded=settings.ungrounded_mode,
        )
        if settings.retention_days is not None:
            purge_expired(store, settings.retention_days)
        from backend.health import check_health
        from ui.app import build_app, launch
        from ui.auth import people_from_settings

        people = people_from_settings(settings)
        signal.signal(signal.SIGTERM, _stop)  # docker stop, Spaces restarts: shut down like Ctrl-C
        try:
            launch(
                build_app(
                    engine=engine, registry=registry, people=people, tickets=desk.list_tickets,
                    ephemeral_storage=settings.storage_is_ephemeral, mcp=mcp,
                ),
                people=people, health=lambda: check_health(store, engine.backend, mcp_servers=mcp),
            )
        finally:
            stopped = store.interrupt_unfinished_calls()
            if stopped:
                logging.warning("%d call(s) were still running at shutdown; marked interrupted", len(stopped))
    except CallcardError as error:
        print(f"Callcard cannot start: {error}", file=sys.stderr)
        return 2
    finally:
        stack.close()
    return 0


def _stop(_signal: int, _frame: object) -> NoReturn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the clean-up short
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
