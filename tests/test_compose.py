"""docker-compose.yml is the production-shaped stack: it must name what the README documents."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from .conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"


def readme_variables() -> list[str]:
    """Variables in the README's configuration table (the CLI-only line is not part of it)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([A-Z_]+)`", line).group(1) for line in table]


def test_compose_names_every_service_of_the_stack():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("postgresql", "temporal", "temporal-ui", "search-attributes", "worker"):
        assert name in services, f"docker-compose.yml has no {name} service"
    creates = " ".join(services["search-attributes"]["command"])
    for attribute in (
        "IncidentSeverity",
        "IncidentPhase",
        "IncidentCommander",
        "IncidentService",
        "IncidentTicket",
    ):
        assert attribute in creates


def test_compose_uses_every_variable_the_readme_documents():
    variables = readme_variables()
    assert "TEMPORAL_ADDRESS" in variables and "SLACK_BOT_TOKEN" in variables
    compose = COMPOSE.read_text()
    missing = [v for v in variables if not re.search(rf"\b{v}\b", compose)]
    assert missing == [], f"documented in README but not in docker-compose.yml: {missing}"


def test_readme_documents_every_setting_the_code_reads():
    from activities.settings import Settings

    documented = set(readme_variables())
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in documented]
    assert missing == [], f"settings not in the README's configuration table: {missing}"


def test_docker_compose_config_accepts_the_file():
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed; scripts/test installs it with apt-get")
        pytest.skip("docker-compose (Debian package) not installed")
    result = subprocess.run(
        [binary, "-f", str(COMPOSE), "--profile", "sandbox", "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
