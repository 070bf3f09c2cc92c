"""The mock devices: every output they serve is real enough for Genie's own parsers,
and the testbeds written for them are ones pyATS loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from activities.devices import HEALTH_COMMANDS
from sandbox.devices import (
    DEVICES_DIR,
    HEADER,
    dump_testbed,
    lab,
    lab_testbed,
    scenarios,
    synthetic_testbed,
    write_testbed,
)

ROOT = Path(__file__).resolve().parent.parent
SESSION_SETUP = (
    "term ",
    "config term",
    "show version | include",
    "no logging",
    "line ",
    "exec-timeout",
    "end",
)


def _served() -> list[tuple[str, str, str]]:
    """(file, state, command) for every output a mock device serves."""
    found = []
    for path in sorted(DEVICES_DIR.glob("*/*.yaml")):
        for state, body in yaml.safe_load(path.read_text()).items():
            for command, answer in (body.get("commands") or {}).items():
                text = answer.get("response") if isinstance(answer, dict) else answer
                if isinstance(text, str) and text.strip() and not command.startswith(SESSION_SETUP):
                    found.append((str(path.relative_to(DEVICES_DIR)), state, command))
    return found


def _parser_for(command: str) -> str:
    # Genie has no `ping ... repeat N` form; the plan parses it as `ping <addr>`.
    return command.split(" repeat ")[0] if command.startswith("ping ") else command


def _answer(relative: str, state: str, command: str) -> str:
    answer = yaml.safe_load((DEVICES_DIR / relative).read_text())[state]["commands"][command]
    return answer.get("response") if isinstance(answer, dict) else answer


@pytest.mark.parametrize(("relative", "state", "command"), _served(), ids=lambda v: str(v))
def test_genie_parses_every_mock_output(relative: str, state: str, command: str) -> None:
    from genie.conf.base import Device

    parsed = Device("mock", os="iosxe").parse(_parser_for(command), output=_answer(relative, state, command))
    assert parsed, f"{relative}: Genie parsed {command!r} to nothing"


def test_every_answering_device_serves_the_baseline_and_the_default_plan() -> None:
    plan_on_r2 = {
        "ping 10.1.1.1 repeat 5",
        "show interfaces GigabitEthernet1",
        "show ip ospf neighbor",
        "show logging",
        "show ip bgp summary",
    }
    for scenario, spec in lab()["scenarios"].items():
        for device, behaviour in spec["devices"].items():
            if behaviour != "mock":
                assert not (DEVICES_DIR / scenario / f"{device}.yaml").exists()
                continue
            states = yaml.safe_load((DEVICES_DIR / scenario / f"{device}.yaml").read_text())
            commands = set(states[f"{device}_enable"]["commands"])
            missing = {c for c, _ in HEALTH_COMMANDS} - commands
            if device == "R2":
                missing |= plan_on_r2 - commands
            assert not missing, f"{scenario}/{device} does not answer {sorted(missing)}"


def test_the_scenarios_tell_the_seed_story() -> None:
    from genie.conf.base import Device

    def parse(scenario: str, device: str, command: str) -> dict:
        text = _answer(f"{scenario}/{device}.yaml", f"{device}_enable", command)
        return Device("mock", os="iosxe").parse(_parser_for(command), output=text)

    ping = parse("outage", "R2", "ping 10.1.1.1 repeat 5")
    assert ping["ping"]["statistics"]["success_rate_percent"] == 0
    neighbors = parse("outage", "R2", "show ip ospf neighbor")["interfaces"]
    assert all("1.1.1.1" not in data["neighbors"] for data in neighbors.values())
    bgp = parse("outage", "R2", "show ip bgp summary")["vrf"]["default"]["neighbor"]
    assert bgp["1.1.1.1"]["address_family"][""]["state_pfxrcd"] == "Idle"
    logs = "\n".join(parse("outage", "R2", "show logging")["logs"])
    assert "Line protocol on Interface GigabitEthernet1, changed state to down" in logs
    for scenario in ("healthy", "recovered"):
        r1 = parse(scenario, "R1", "show ip ospf neighbor")["interfaces"]
        assert sum(len(d["neighbors"]) for d in r1.values()) == 3
    reason = parse("recovered", "R1", "show version")["version"]["last_reload_reason"]
    assert "Critical software exception" in reason


def test_config_testbed_is_the_portable_outage_scenario() -> None:
    header = HEADER.format(scenario="outage", description=scenarios()["outage"], flags=" --portable")
    expected = dump_testbed(lab_testbed("outage", portable=True), header)
    assert (ROOT / "config" / "testbed.yaml").read_text() == expected, (
        "config/testbed.yaml is stale: run `python -m sandbox.devices testbed outage --portable "
        "-o config/testbed.yaml`"
    )


def test_the_portable_testbed_loads_from_any_directory(tmp_path, monkeypatch) -> None:
    from pyats.topology import loader

    monkeypatch.chdir(tmp_path)
    testbed = loader.load(str(ROOT / "config" / "testbed.yaml"))
    r2 = testbed.devices["R2"].connections["cli"]["command"]
    assert Path(r2.split()[0]).is_absolute() and Path(r2.split()[0]).exists()
    assert str(DEVICES_DIR / "outage") in r2
    assert "Connection refused" in testbed.devices["R1"].connections["cli"]["command"]


def test_switching_scenarios_rewrites_the_same_testbed(tmp_path) -> None:
    from pyats.topology import loader

    path = tmp_path / "testbed.yaml"
    write_testbed("outage", path, extra={"DEAD": "silent", "LOCKED": "badauth"})
    outage = loader.load(str(path))
    assert "refused" in outage.devices["R1"].connections["cli"]["command"]
    assert outage.devices["DEAD"].connections["cli"]["command"].startswith("sleep")
    assert str(outage.devices["LOCKED"].credentials["default"]["password"].plaintext) == "not-the-password"
    write_testbed("recovered", path)
    recovered = loader.load(str(path))
    assert str(DEVICES_DIR / "recovered") in recovered.devices["R1"].connections["cli"]["command"]
    assert "DEAD" not in recovered.devices


def test_synthetic_testbed_has_each_site_behind_its_own_upstream(tmp_path) -> None:
    from pyats.topology import loader

    path = tmp_path / "synthetic.yaml"
    path.write_text(dump_testbed(synthetic_testbed(12)))
    testbed = loader.load(str(path))
    assert len(testbed.devices) == 24
    assert testbed.devices["S07"].custom["upstream"] == "UP07"
    [link] = testbed.devices["S07"].find_links(testbed.devices["UP07"])
    assert {i.device.name: str(i.ipv4.ip) for i in link.interfaces} == {"S07": "10.1.1.1", "UP07": "10.1.1.2"}
