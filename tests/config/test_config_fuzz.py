"""Property: any value, of any shape, in any place of a config file (YAML, JSON or
TOML), in a profile or in a ``MESHLITE_*`` override, gives a ``ConfigError`` naming
where, or a valid mesh; never another error."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meshlite as ml
from meshlite.config._discovery import DRIVER_OPTIONS
from meshlite.config._fieldset import field_names
from meshlite.config._load import load_plan
from meshlite.config._schema import (
    AlertRuleSection,
    AlertsSection,
    DashboardSection,
    HealthCheckSection,
    HotReloadSection,
    OutlierDetectionSection,
    ServiceSection,
    TelemetrySection,
    TLSSection,
)
from meshlite.config._sections import POLICY_SECTIONS, BackoffSection, BudgetSection
from meshlite.config._source import TOP_LEVEL_KEYS

BACKENDS = ["http://127.0.0.1:1"]

scalars = (st.none() | st.booleans() | st.integers() | st.integers(-10, 10)
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
               [0.0, -1.0, 1e308, 2**63, 10**30, "", "0", "-3", "1.5", "true", "off",
                "100ms", "http://127.0.0.1:1", "constant", "static", "${NOPE}", "$${X}"])
           | st.text(max_size=12))
keys = st.text(max_size=8) | st.sampled_from(["type", "url", "delay", "seconds", "rules"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=12)


def _service(extra: dict[str, Any]) -> dict[str, Any]:
    return {"services": {"users": {"backends": BACKENDS, **extra}}}


def _places() -> list[tuple[str, Any]]:
    """(name, function of a value -> a config document) for every place a value goes."""
    places: list[tuple[str, Any]] = []
    for key in (*TOP_LEVEL_KEYS, "profiles"):
        places.append((key, lambda v, k=key: {k: v}))
    places.append(("services.users", lambda v: {"services": {"users": v}}))
    for name in field_names(ServiceSection):
        places.append((f"service.{name}", lambda v, n=name: _service({n: v})))
    sections: dict[str, type[Any]] = {**POLICY_SECTIONS, "health_check": HealthCheckSection,
                                      "outlier_detection": OutlierDetectionSection,
                                      "tls": TLSSection}
    for section, cls in sections.items():
        for option in field_names(cls):
            places.append((f"service.{section}.{option}",
                           lambda v, s=section, o=option: _service({s: {o: v}})))
    for option in field_names(BackoffSection):
        places.append((f"retry.backoff.{option}",
                       lambda v, o=option: _service({"retry": {"backoff": {o: v}}})))
    for option in field_names(BudgetSection):
        places.append((f"retry.budget.{option}",
                       lambda v, o=option: _service({"retry": {"budget": {o: v}}})))
    for kind in ("static", "file", "dns", "redis"):
        for option in (*DRIVER_OPTIONS, "backends", "path", "name", "port", "url", "type"):
            places.append((f"discovery.{kind}.{option}",
                           lambda v, k=kind, o=option: _service(
                               {"discovery": {"type": k, o: v}})))
    for top, cls in (("dashboard", DashboardSection), ("telemetry", TelemetrySection),
                     ("hot_reload", HotReloadSection), ("alerts", AlertsSection)):
        for option in field_names(cls):
            places.append((f"{top}.{option}", lambda v, t=top, o=option: {t: {o: v}}))
    for option in field_names(AlertRuleSection):
        rule = {"name": "r", "condition": "error_rate", "threshold": 0.5}
        places.append((f"alerts.rules.{option}",
                       lambda v, o=option, r=rule: {"alerts": [{**r, o: v}]}))
    return places


PLACES = _places()


def _toml_value(value: Any) -> str:
    if value is None:
        return '""'  # TOML has no null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}"
                           for k, v in value.items()) + "}"


def _write(directory: Path, fmt: str, document: dict[str, Any]) -> str:
    path = directory / f"mesh.{fmt}"
    if fmt == "yaml":
        text = yaml.safe_dump(document)
    elif fmt == "json":
        text = json.dumps(document)
    else:
        text = "\n".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in document.items())
    path.write_text(text, encoding="utf-8")
    return str(path)


def _telemetry_untouched(*args: Any, **kwargs: Any) -> None:
    """The process's global tracer provider is left alone by this property test."""


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), value=values, fmt=st.sampled_from(["yaml", "json", "toml"]))
def test_any_value_anywhere_is_a_config_error_or_a_valid_mesh(
        place: tuple[str, Any], value: Any, fmt: str) -> None:
    name, make = place
    with tempfile.TemporaryDirectory() as directory:
        path = _write(Path(directory), fmt, make(value))
        try:
            load_plan(path, environ={})
        except ml.ConfigError as error:
            refused: ml.ConfigError | None = error
        else:
            refused = None
        if refused is not None:
            assert refused.errors or str(refused).startswith(path), (name, refused)
            assert len(str(refused)) < 50_000
            return
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("meshlite.config._mesh_config.configure_telemetry",
                          _telemetry_untouched)
            mesh = ml.Mesh.from_config(path, environ={}, hot_reload=False)
        assert isinstance(mesh, ml.Mesh)


override_names = st.lists(st.sampled_from(
    ["SERVICES", "USERS", "RETRY", "ATTEMPTS", "BACKOFF", "TYPE", "BACKENDS", "0", "1",
     "DASHBOARD", "PORT", "TOKEN", "DISCOVERY", "ALERTS", "RULES", "HOT_RELOAD", "X"]),
    min_size=1, max_size=5).map(lambda parts: "MESHLITE_" + "__".join(parts))
override_values = st.text(max_size=10) | values.map(json.dumps)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=st.dictionaries(override_names, override_values, max_size=3),
       profile=values)
def test_any_override_or_profile_is_a_config_error_or_a_valid_config(
        overrides: dict[str, str], profile: Any) -> None:
    document = {**_service({"retry": {"attempts": 2}}), "profiles": {"prod": profile}}
    with tempfile.TemporaryDirectory() as directory:
        path = _write(Path(directory), "yaml", document)
        message = ""
        try:
            load_plan(path, environ={"MESHLITE_ENV": "prod", **overrides})
        except ml.ConfigError as error:  # anything else fails the test
            message = str(error)
        assert len(message) < 50_000
