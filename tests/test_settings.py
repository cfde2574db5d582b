"""App settings: one place to read them, the sample file documents every default."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from pipeline.settings import DEFAULTS, Settings


def test_sample_settings_document_every_setting_with_its_default():
    values = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    for name, default in DEFAULTS.items():
        assert name in values, f"{name} is missing from local.settings.sample.json"
        if default:
            assert values[name] == default, f"{name}: sample says {values[name]!r}, default is {default!r}"


def test_parallel_groups_respect_the_core_quota():
    quota_bound = Settings.from_env({"MAX_PARALLEL_GROUPS": "10", "CORE_QUOTA": "8", "CONTAINER_CPU": "2"})
    assert quota_bound.parallel_groups == 4
    assert Settings.from_env({"MAX_PARALLEL_GROUPS": "3", "CORE_QUOTA": "100"}).parallel_groups == 3


@pytest.mark.parametrize(("env", "message"), [
    ({"CONTAINER_CPU": "two"}, "CONTAINER_CPU='two' is not a valid float"),
    ({"CONTAINER_CPU": "8", "CORE_QUOTA": "4"}, "not even one group fits"),
    ({"MAX_PARALLEL_GROUPS": "0"}, "MAX_PARALLEL_GROUPS must be at least 1"),
])
def test_bad_settings_name_the_setting(env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_host_json_is_a_v4_durable_app():
    host = json.loads((REPO / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host["extensionBundle"]["version"].startswith("[4.")
