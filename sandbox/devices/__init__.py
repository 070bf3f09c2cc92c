"""Mock network devices: pyATS testbeds for the sandbox lab, one scenario at a time.

The lab (R1 behind R2, R2 peering with an ISP) is described once in
`lab.yaml`; each scenario folder holds the unicon mock data of every device
that answers in that scenario (`<scenario>/<device>.yaml`). A testbed written
here connects pyATS, for real, to `mock_device_cli` processes serving that
data, so switching scenarios is writing the testbed again for another one:

    python -m sandbox.devices testbed outage -o .data/testbed.yaml
    python -m sandbox.devices testbed recovered -o .data/testbed.yaml   # R1 is back

The device activities reload a testbed whose file changed and drop the
sessions they had open, so the next check sees the new scenario (as they
would after a real device reloaded). `incident dev` writes the lab's testbed
to `<data dir>/testbed.yaml` and `incident devices recovered` switches it.

`config/testbed.yaml` is the outage scenario written with `--portable`: its
connection commands are pyATS `%CALLABLE{}` markups that resolve to absolute
paths when the testbed is loaded, so it works from a fresh clone, from any
working directory, with or without the virtualenv on PATH.

`write_synthetic_testbed(n, path)` writes n site routers that are down, each behind its
own upstream router (a copy of R2 in the outage), for bench/investigation.py.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DEVICES_DIR = Path(__file__).resolve().parent
LAB_FILE = DEVICES_DIR / "lab.yaml"
SYNTHETIC_DIR = DEVICES_DIR / "synthetic"
BEHAVIOURS = ("mock", "refused", "silent", "badauth")
# unicon waits 10 s after each disconnect by default; a mock needs none of that.
NO_DISCONNECT_WAIT = {"POST_DISCONNECT_WAIT_SEC": 0, "GRACEFUL_DISCONNECT_WAIT_SEC": 0}
# What a console server prints when the device behind it is down; unicon knows the words.
REFUSED_COMMAND = "/bin/sh -c 'echo \"% Connection refused by remote host\"; exit 1'"
SILENT_COMMAND = "sleep 600"  # opens, never prints a prompt; unicon kills it when it gives up
WRONG_PASSWORD = "not-the-password"


class UnknownScenario(ValueError):
    pass


@lru_cache(maxsize=1)
def lab() -> dict[str, Any]:
    with LAB_FILE.open() as handle:
        data: dict[str, Any] = yaml.safe_load(handle)
    return data


def scenarios() -> dict[str, str]:
    """Scenario name -> one-line description."""
    return {name: spec.get("description", "") for name, spec in lab()["scenarios"].items()}


BEHAVIOUR_TEXT = {
    "mock": "up",
    "refused": "down (connection refused)",
    "silent": "silent (never answers)",
    "badauth": "up, rejects the login",
}


def scenario_devices(scenario: str) -> dict[str, str]:
    """Device -> what it does in `scenario`, in words: `{"R1": "down (connection refused)", "R2": "up"}`."""
    _behaviour("R1", scenario)  # validates the scenario name
    return {name: BEHAVIOUR_TEXT[_behaviour(name, scenario)] for name in lab()["devices"]}


def scenario_changes(old: str | None, new: str) -> list[str]:
    """One line per device between two scenarios: `R1: down (connection refused) → up`."""
    after = scenario_devices(new)
    before = scenario_devices(old) if old in scenarios() else {}
    lines = []
    for name, now in after.items():
        was = before.get(name)
        if was is None:
            lines.append(f"{name}: {now}")
        elif was != now:
            lines.append(f"{name}: {was} → {now}")
        elif now.startswith("up"):
            lines.append(f"{name}: {now}, as before (now answering with the {new} scenario's data)")
        else:
            lines.append(f"{name}: {now}, as before")
    return lines


def scenario_of(path: str | Path) -> str | None:
    """The lab scenario a testbed written here is for (from its name); None if it is not the lab's."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    name = ((data or {}).get("testbed") or {}).get("name") if isinstance(data, dict) else None
    prefix = f"{lab()['testbed']['name']}-"
    if isinstance(name, str) and name.startswith(prefix) and name[len(prefix) :] in scenarios():
        return name[len(prefix) :]
    return None


def mock_device_cli() -> str:
    """unicon's `mock_device_cli`, preferably the one installed next to this Python."""
    beside = Path(sys.executable).parent / "mock_device_cli"
    if beside.exists():
        return str(beside)
    found = shutil.which("mock_device_cli")
    if found is None:
        raise FileNotFoundError("mock_device_cli not found: install pyATS (`pip install pyats genie`)")
    return found


def _behaviour(device: str, scenario: str) -> str:
    spec = lab()["scenarios"].get(scenario)
    if spec is None:
        raise UnknownScenario(f"unknown scenario {scenario!r}: choose one of {', '.join(scenarios())}")
    behaviour: str = spec["devices"].get(device, "refused")
    return behaviour


def _mock_command(data_dir: Path, state_prefix: str, hostname: str) -> str:
    return " ".join(
        [
            shlex.quote(mock_device_cli()),
            "--os iosxe",
            f"--state {state_prefix}_login",
            f"--hostname {shlex.quote(hostname)}",
            f"--mock_data_dir {shlex.quote(str(data_dir))}",
        ]
    )


def connection_command(device: str, scenario: str, behaviour: str | None = None) -> str:
    """The command pyATS spawns to reach `device` in `scenario` (absolute paths).

    Also what `%CALLABLE{sandbox.devices.connection_command(R1,outage)}` in a
    portable testbed calls when pyATS loads it.
    """
    behaviour = behaviour or _behaviour(device, scenario)
    if behaviour == "refused":
        return REFUSED_COMMAND
    if behaviour == "silent":
        return SILENT_COMMAND
    if behaviour in ("mock", "badauth"):
        data_dir = DEVICES_DIR / scenario
        mock_as = device if (data_dir / f"{device}.yaml").exists() else "R2"
        return _mock_command(data_dir, mock_as, device)
    raise ValueError(f"unknown behaviour {behaviour!r}: use one of {', '.join(BEHAVIOURS)}")


def _connection(command: str) -> dict[str, Any]:
    return {
        "defaults": {"class": "unicon.Unicon", "via": "cli"},
        "cli": {"command": command, "settings": dict(NO_DISCONNECT_WAIT)},
    }


def lab_testbed(
    scenario: str,
    *,
    extra: dict[str, str] | None = None,
    portable: bool = False,
    connect_timeouts: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The lab as a pyATS testbed for `scenario`.

    `extra` adds devices that are not in the lab, each with a behaviour
    (`{"DEAD": "silent", "LOCKED": "badauth"}`), for the tests.
    `connect_timeouts` gives devices their own connect timeout, in seconds, where
    unicon reads it (`connections.cli.arguments.connection_timeout`).
    """
    source = lab()
    _behaviour("R1", scenario)  # validates the scenario name
    testbed: dict[str, Any] = {
        "testbed": dict(source["testbed"], name=f"{source['testbed']['name']}-{scenario}"),
        "devices": {},
        "topology": source.get("topology", {}),
    }
    wanted = {name: _behaviour(name, scenario) for name in source["devices"]}
    wanted.update(extra or {})
    for name, behaviour in wanted.items():
        device = dict(source["devices"].get(name, {"os": "iosxe", "type": "router"}))
        if portable and name in source["devices"]:
            command = f"%CALLABLE{{sandbox.devices.connection_command({name},{scenario})}}"
        else:
            command = connection_command(name, scenario, behaviour)
        device["connections"] = _connection(command)
        if connect_timeouts and name in connect_timeouts:
            device["connections"]["cli"]["arguments"] = {"connection_timeout": connect_timeouts[name]}
        if behaviour == "badauth":
            device["credentials"] = {"default": {"username": "admin", "password": WRONG_PASSWORD}}
        testbed["devices"][name] = device
    return testbed


def synthetic_testbed(count: int) -> dict[str, Any]:
    """`count` site routers S01.. that are down, each behind its own upstream UP01.. (R2 in the outage)."""
    source = lab()
    testbed: dict[str, Any] = {
        "testbed": dict(source["testbed"], name=f"incident-sandbox-synthetic-{count}"),
        "devices": {},
        "topology": {},
    }
    width = max(2, len(str(count)))
    for i in range(1, count + 1):
        site, upstream = f"S{i:0{width}d}", f"UP{i:0{width}d}"
        testbed["devices"][site] = {
            "os": "iosxe",
            "type": "router",
            "custom": {"router_id": "1.1.1.1", "upstream": upstream},
            "connections": _connection(REFUSED_COMMAND),
        }
        testbed["devices"][upstream] = {
            "os": "iosxe",
            "type": "router",
            "connections": _connection(_mock_command(SYNTHETIC_DIR, "UP", upstream)),
        }
        link = f"{site}-{upstream}"
        testbed["topology"][site] = {
            "interfaces": {"GigabitEthernet1": {"ipv4": "10.1.1.1/30", "link": link, "type": "ethernet"}}
        }
        testbed["topology"][upstream] = {
            "interfaces": {"GigabitEthernet1": {"ipv4": "10.1.1.2/30", "link": link, "type": "ethernet"}}
        }
    return testbed


HEADER = """\
# pyATS testbed for the sandbox lab, scenario {scenario!r}: {description}
# Written by `python -m sandbox.devices testbed {scenario}{flags}`; edit sandbox/devices/lab.yaml
# and the mock data under sandbox/devices/{scenario}/ instead, then write it again.
"""


def dump_testbed(testbed: dict[str, Any], header: str = "") -> str:
    return header + yaml.safe_dump(testbed, sort_keys=False, default_flow_style=False, width=200)


def write_testbed(
    scenario: str,
    path: str | Path,
    *,
    extra: dict[str, str] | None = None,
    portable: bool = False,
    connect_timeouts: dict[str, float] | None = None,
) -> Path:
    """Write the testbed for `scenario` to `path` (atomically: a reader never sees half a file)."""
    header = HEADER.format(
        scenario=scenario, description=scenarios()[scenario], flags=" --portable" if portable else ""
    )
    testbed = lab_testbed(scenario, extra=extra, portable=portable, connect_timeouts=connect_timeouts)
    return _write(Path(path), dump_testbed(testbed, header))


def write_synthetic_testbed(count: int, path: str | Path) -> Path:
    header = f"# {count} synthetic sites behind their own upstream routers, for bench/investigation.py\n"
    return _write(Path(path), dump_testbed(synthetic_testbed(count), header))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.devices", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("testbed", help="write the lab's testbed for a scenario")
    write.add_argument("scenario", choices=sorted(scenarios()))
    write.add_argument("-o", "--output", help="file to write (default: print)")
    write.add_argument(
        "--portable", action="store_true", help="resolve paths when pyATS loads it (config/testbed.yaml)"
    )
    sub.add_parser("scenarios", help="list the scenarios")
    args = parser.parse_args(argv)
    if args.command == "scenarios":
        for name, description in scenarios().items():
            print(f"{name:<10} {description}")
        return 0
    if args.output:
        path = write_testbed(args.scenario, args.output, portable=args.portable)
        print(f"wrote {path} (scenario {args.scenario})")
    else:
        header = HEADER.format(
            scenario=args.scenario,
            description=scenarios()[args.scenario],
            flags=" --portable" if args.portable else "",
        )
        print(dump_testbed(lab_testbed(args.scenario, portable=args.portable), header), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
