"""The `[spc]` section: documented defaults per classification, overrides per characteristic, clear errors."""

from __future__ import annotations

import pytest

from qualitybridge.config import ConfigError, parse_config
from qualitybridge.domain.spc import ALL_RULES


def test_defaults_per_classification() -> None:
    policy = parse_config({}, source="test").spc.policy()
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
    policy = parse_config(raw, source="test").spc.policy()
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
