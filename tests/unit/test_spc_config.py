"""The `[spc]` section: documented defaults per classification, overrides per characteristic, clear errors."""

from __future__ import annotations

import pytest

from qualitybridge.app import spc_policy
from qualitybridge.config import ConfigError, SpcRuleDefaults, SpcSettingsSection, parse_config
from qualitybridge.domain.spc import ALL_RULES, DEFAULT_RULES, DEFAULT_SEVERITY, SpcPolicy


def test_defaults_per_classification() -> None:
    policy = spc_policy(parse_config({}, source="test").spc)
    assert policy.settings_for("C1", "critical").rules == ALL_RULES
    assert policy.settings_for("C1", "major").rules == {1, 2, 5, 6}
    assert policy.settings_for("C1", "minor").rules == {1}
    assert policy.settings_for("C1", "minor").baseline_subgroups == 25
    assert [policy.severity_for(c) for c in ("critical", "major", "minor")] == [900, 700, 400]


def test_a_characteristic_overrides_its_classification() -> None:
    raw = {
        "spc": {
            "baseline_subgroups": 30,
            "rules": {"major": [1, 3]},
            "characteristics": {"C0010": {"rules": [], "baseline_subgroups": 50}, "C0020": {"baseline_subgroups": 8}},
        }
    }
    policy = spc_policy(parse_config(raw, source="test").spc)
    assert policy.settings_for("C0010", "critical").rules == frozenset()
    assert policy.settings_for("C0010", "critical").baseline_subgroups == 50
    assert policy.settings_for("C0020", "major").rules == {1, 3}
    assert policy.settings_for("C0020", "major").baseline_subgroups == 8
    assert policy.settings_for("C0030", "major").baseline_subgroups == 30


def test_a_rule_outside_1_to_8_is_named() -> None:
    with pytest.raises(ConfigError, match=r"spc\.rules\.major"):
        parse_config({"spc": {"rules": {"major": [9]}}}, source="test")
    with pytest.raises(ConfigError, match=r"spc\.characteristics\.C1\.baseline_subgroups"):
        parse_config({"spc": {"characteristics": {"C1": {"baseline_subgroups": 1}}}}, source="test")


def test_config_defaults_are_the_domain_defaults() -> None:
    """The config imports nothing of QualityBridge, so it repeats the domain's defaults: they must agree."""
    section = SpcSettingsSection()
    assert {name: frozenset(rules) for name, rules in section.rules.model_dump().items()} == dict(DEFAULT_RULES)
    assert section.severity.model_dump() == dict(DEFAULT_SEVERITY)
    domain = SpcPolicy()
    assert (section.baseline_subgroups, section.capability_window) == (
        domain.baseline_subgroups,
        domain.capability_window,
    )
    assert set(SpcRuleDefaults.model_fields) == set(DEFAULT_RULES)
