"""Diagnostic plans: config/plans/<plan>.yaml, validated, and their `{param}` templates filled.

A plan may hold only show, ping and traceroute commands and only checks that
exist (checks.py); a plan that cannot be loaded is a non-retryable PlanError.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from .checks import CHECKS
from .errors import _non_retryable

READ_ONLY_COMMANDS = ("show ", "ping ", "traceroute ")


class PlanStepSpec(BaseModel):
    title: str
    on: Literal["upstream", "device"] = "upstream"
    command: str
    parser: str | None = None
    check: str
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)

    @field_validator("command")
    @classmethod
    def _read_only(cls, value: str) -> str:
        if not value.strip().lower().startswith(READ_ONLY_COMMANDS):
            raise ValueError(
                f"{value!r} is not read-only: plan commands must start with show, ping or traceroute"
            )
        return value.strip()

    @field_validator("check")
    @classmethod
    def _known_check(cls, value: str) -> str:
        if value not in CHECKS:
            raise ValueError(f"unknown check {value!r}: use one of {', '.join(sorted(CHECKS))}")
        return value


class PlanSpec(BaseModel):
    name: str
    description: str = ""
    steps: list[PlanStepSpec] = Field(min_length=1)


def load_plan(plans_dir: Path, name: str) -> PlanSpec:
    """config/plans/<name>.yaml, validated; PlanError says what is wrong and where."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise _non_retryable("PlanError", f"bad plan name {name!r}")
    path = plans_dir / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in plans_dir.glob("*.yaml"))
        raise _non_retryable(
            "PlanError", f"no plan {name!r} in {plans_dir} (plans: {', '.join(known) or 'none'})"
        )
    try:
        data = yaml.safe_load(path.read_text())
        return PlanSpec.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise _non_retryable("PlanError", f"plan {path} is not valid: {exc}") from None


class _Params(dict[str, Any]):
    """str.format_map that names the missing parameter instead of a bare KeyError."""

    def __missing__(self, key: str) -> Any:
        raise _MissingParam(key)


class _MissingParam(KeyError):
    pass


def _fill(template: str, params: dict[str, Any]) -> str:
    return template.format_map(_Params(params))


def _fill_safe(template: str, params: dict[str, Any]) -> str:
    try:
        return _fill(template, params)
    except _MissingParam:
        return template
