"""The real `python app.py`, as an operator starts it: settings from the environment, /healthz, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from backend.storage.store import Store
from backend.storage.tables import CallStatus, FunctionCallRecord
from tests.fake_tgi import FakeTGI, unused_port

ROOT = Path(__file__).resolve().parents[1]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, process.stdout.read().decode()[-3000:] if process.stdout else "app exited"
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError as error:
            if error.code != 404:  # Gradio answers before /healthz is added, for a moment
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.3)


def test_app_serves_healthz_recovers_interrupted_calls_and_stops_cleanly(tmp_path: Path, fake_tgi: FakeTGI) -> None:
    data = tmp_path / "data"
    store = Store.in_data_dir(data)  # a call left running by a process that died
    conversation = store.create_conversation(owner=store.user("local"))
    record = store.add_call(
        FunctionCallRecord(conversation_id=conversation.id, reply_id="r", turn_id="t", function_name="cancel_order"),
        message_content="{}",
    )
    store.transition(record.id, expected=CallStatus.PROPOSED, to=CallStatus.RUNNING, runner=store.instance)
    store.close()

    port = unused_port()
    environment = {
        **os.environ, "CALLCARD_ENDPOINT": fake_tgi.url, "CALLCARD_DATA_DIR": str(data),
        "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
    }
    environment.pop("CALLCARD_BACKEND", None)
    app = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", app)
        status, report = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and report["ok"] and report["database"] and report["model"]
        assert report["backend"] == "tgi" and report["model_id"] == fake_tgi.model_id
        assert Store.in_data_dir(data).call(record.id).status == CallStatus.INTERRUPTED

        fake_tgi.healthy = False
        status, report = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and not report["ok"] and report["database"] and not report["model"]
    finally:
        app.send_signal(signal.SIGTERM)
        output = app.communicate(timeout=30)[0].decode()
    assert app.returncode == 0, output[-3000:]
    assert "interrupted" in output


def test_a_wrong_setting_stops_start_up_with_what_to_set(tmp_path: Path) -> None:
    environment = {**os.environ, "CALLCARD_BACKEND": "tgi", "CALLCARD_DATA_DIR": str(tmp_path)}
    environment.pop("CALLCARD_ENDPOINT", None)
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "set CALLCARD_ENDPOINT" in result.stderr
