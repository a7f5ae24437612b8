"""Deployment files that cannot be built here (no Docker engine): check what can be checked statically."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import yaml

from backend.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _settings_variables() -> set[str]:
    names = {f"CALLCARD_{name.upper()}" for name in Settings.model_fields}
    return names | {"HF_TOKEN", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"}


def test_compose_runs_callcard_beside_tgi_with_settings_the_app_reads() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"tgi", "callcard"}

    tgi = services["tgi"]
    assert tgi["image"].startswith("ghcr.io/huggingface/text-generation-inference:")
    assert "--max-input-length=4000" in tgi["command"] and "--max-total-tokens=4096" in tgi["command"]

    callcard = services["callcard"]
    environment = callcard["environment"]
    assert set(environment) <= _settings_variables(), "every variable must be one the app reads"
    endpoint = urlparse(environment["CALLCARD_ENDPOINT"])
    assert endpoint.hostname == "tgi" and endpoint.port == 80, "TGI's container listens on port 80"
    assert environment["CALLCARD_BACKEND"] == "tgi"
    assert callcard["ports"] == ["7860:7860"]
    assert environment["GRADIO_SERVER_PORT"] == "7860"
    assert any(volume.endswith(":/data") for volume in callcard["volumes"])
    settings = Settings(**{k.removeprefix("CALLCARD_").lower(): v for k, v in environment.items() if k.startswith("CALLCARD_")})
    assert settings.backend == "tgi" and str(settings.data_dir) == "/data"


def test_dockerfile_is_multi_stage_non_root_and_runs_app_py() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]
    assert len(stages) == 2, "a build stage with the compiler, a final stage without it"
    assert "build-essential" in stages[0] and "build-essential" not in stages[1]
    final = stages[1]
    assert 'CMD ["python", "app.py"]' in final
    assert "USER 1000" in final and "EXPOSE 7860" in final
    assert "GRADIO_SERVER_NAME=0.0.0.0" in final
    assert "/healthz" in final and "HEALTHCHECK" in final
    assert 'VOLUME ["/data"]' in final
    for copied in re.findall(r"^COPY --chown=\S+ (\S+)", final, flags=re.MULTILINE):
        assert (ROOT / copied).exists(), f"the image copies {copied}, which must exist"
    for variable in re.findall(r"\b(CALLCARD_[A-Z_]+)=", final):
        assert variable in _settings_variables()


def test_readme_front_matter_is_a_gradio_space_matching_the_requirements() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.startswith("---\n")
    front = yaml.safe_load(readme.split("---\n")[1])
    pinned = re.search(r"^gradio==(\S+)$", (ROOT / "requirements.txt").read_text(), flags=re.MULTILINE)
    assert pinned is not None
    assert front["sdk"] == "gradio" and str(front["sdk_version"]) == pinned.group(1)
    assert front["app_file"] == "app.py" and (ROOT / front["app_file"]).is_file()
    assert str(front["python_version"]) == "3.11"
    assert len(front["short_description"]) <= 60
    for key in ("title", "emoji", "colorFrom", "colorTo"):
        assert front[key]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "\nscripts/test\n" in readme and "\nscripts/run\n" in readme
    assert "exec scripts/test" in (ROOT / ".ci" / "run").read_text()
