"""The files users read and deploy from know every variable the bot reads."""

from __future__ import annotations

import json
import re

import pytest

from bot.config import ENV_VARS
from tests import REPO

ROOT = REPO
# PORT and DATABASE_URL are set by the platform on Heroku (the PostgreSQL add-on, the router).
PLATFORM_SET = {"PORT", "DATABASE_URL"}


def test_config_reads_exactly_the_listed_variables() -> None:
    source = (ROOT / "bot" / "config.py").read_text()
    read = set(re.findall(r'get\("([A-Z0-9_]+)"\)', source)) | set(
        re.findall(r'\.get\("([A-Z0-9_]+)", ""\)', source)
    )
    assert read == set(ENV_VARS)


@pytest.mark.parametrize("name", ENV_VARS)
def test_env_example_and_readme_document_every_variable(name: str) -> None:
    assert re.search(rf"^{name}=", (ROOT / ".env.example").read_text(), re.M), (
        f"{name} missing from .env.example"
    )
    assert f"`{name}`" in (ROOT / "README.md").read_text(), f"{name} missing from README.md"


def test_app_json_knows_every_variable() -> None:
    env = json.loads((ROOT / "app.json").read_text())["env"]
    assert set(env) == set(ENV_VARS) - PLATFORM_SET
    assert all(v["description"] for v in env.values())


def test_procfile_serves_http_and_documents_socket_mode() -> None:
    text = (ROOT / "Procfile").read_text()
    assert re.search(r"^web: python -m bot serve$", text, re.M)
    assert "python -m bot socket" in text
