"""schemas/ovms-config.schema.json must reject what OVMS rejects, and accept what it accepts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelsync import schema
from modelsync.config import load_config
from modelsync.errors import ConfigError
from tests.support.processes import agent_cli
from tests.support.volume import Volume

INT64_MAX = 2**63 - 1


def config(**entry: Any) -> dict[str, Any]:
    return {"model_config_list": [{"config": {"name": "m", "base_path": "/models/m", **entry}}]}


VALID = [
    {"model_config_list": []},
    config(),
    config(target_device="CPU", batch_size=0, nireq=4, allow_cache=True),
    config(batch_size="auto", shape="(1,3,224,224)", layout="NCHW"),
    config(shape={"input": "(1,3,224,224)"}, layout={"input": "NCHW:NHWC"}),
    config(model_version_policy={"all": {}}),
    config(model_version_policy={"latest": {"num_versions": 2}}),
    config(model_version_policy={"specific": {"versions": [1, 3]}}),
    config(plugin_config={"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 2, "ENABLE_X": True}),
    config(custom_loader_options={"loader_name": "l", "extra": "ok"}),
    {**config(), "monitoring": {"metrics": {"enable": True, "metrics_list": ["ovms_requests_success"]}}},
    {**config(), "pipeline_config_list": [{"name": "p"}], "mediapipe_config_list": [{"name": "g"}]},
    {"model_config_list": [{"config": {"name": "graph", "graph_path": "/g.pbtxt", "subconfig": "/s.json"}}]},
    # The largest values OVMS reads as they are (see BEYOND_OVMS).
    config(model_version_policy={"latest": {"num_versions": INT64_MAX}}),
    config(model_version_policy={"specific": {"versions": [1, INT64_MAX]}}),
    config(nireq=2**32 - 1, batch_size=INT64_MAX),
    config(plugin_config={"A": INT64_MAX, "B": -(2**63), "C": 0.5, "D": 2.5e-7}),
]

INVALID = {
    "missing model_config_list": {},
    "unknown top-level key": {**config(), "models": []},
    "extra key beside config": {"model_config_list": [{"config": {"name": "m"}, "extra": 1}]},
    "missing name": {"model_config_list": [{"config": {"base_path": "/m"}}]},
    "unknown config key": config(foo="bar"),
    "removed in 2026: stateful": config(stateful=True),
    "removed in 2026: idle_sequence_cleanup": config(idle_sequence_cleanup=True),
    "removed in 2026: low_latency_transformation": config(low_latency_transformation=True),
    "removed in 2026: max_sequence_number": config(max_sequence_number=10),
    "never valid: mean": config(mean="[0,0,0]"),
    "never valid: scale": config(scale="255"),
    "never valid: color_format": config(color_format="BGR"),
    "never valid: precision": config(precision="FP32"),
    "negative batch_size": config(batch_size=-1),
    "negative nireq": config(nireq=-1),
    "nireq as string": config(nireq="4"),
    "allow_cache as string": config(allow_cache="true"),
    "name not a string": {"model_config_list": [{"config": {"name": 7}}]},
    "two version policies": config(model_version_policy={"all": {}, "latest": {"num_versions": 1}}),
    "latest without num_versions": config(model_version_policy={"latest": {}}),
    "num_versions zero": config(model_version_policy={"latest": {"num_versions": 0}}),
    "specific version zero": config(model_version_policy={"specific": {"versions": [0]}}),
    "unknown policy": config(model_version_policy={"newest": {}}),
    "shape map of ints": config(shape={"input": 3}),
    "plugin_config nested object": config(plugin_config={"A": {"b": 1}}),
    "custom_loader_options without loader_name": config(custom_loader_options={"x": "y"}),
    "monitoring without enable": {**config(), "monitoring": {"metrics": {}}},
    "monitoring unknown key": {**config(), "monitoring": {"metrics": {"enable": True}, "x": 1}},
    "model_config_list not a list": {"model_config_list": {"config": {"name": "m"}}},
}


# Integers past what OVMS reads (src/modelconfig.cpp, src/json_parser.cpp): rapidjson keeps
# up to uint64 as an integer, and OVMS then takes num_versions with GetInt64 (2**63 turns
# negative), versions as int64, batch_size into an int64 Dimension (negative: an exception),
# nireq into a uint32 (2**32 is 0); a plugin_config integer over int64 is silently dropped.
# Past uint64, rapidjson reads a double, which OVMS's own schema refuses as an integer.
BEYOND_OVMS = {
    "model_version_policy.latest.num_versions": {"model_version_policy": {"latest": {"num_versions": 2**70}}},
    "model_version_policy.latest.num_versions ": {
        "model_version_policy": {"latest": {"num_versions": 2**63}}
    },
    "model_version_policy.specific.versions[1]": {
        "model_version_policy": {"specific": {"versions": [1, 2**63]}}
    },
    "nireq": {"nireq": 2**32},
    "batch_size": {"batch_size": 2**63},
    "plugin_config.NUM_STREAMS": {"plugin_config": {"NUM_STREAMS": 2**63}},
    "plugin_config.NUM_STREAMS ": {"plugin_config": {"NUM_STREAMS": -(2**63) - 1}},
}


@pytest.mark.parametrize("field", BEYOND_OVMS, ids=BEYOND_OVMS.keys())
def test_integers_past_what_ovms_reads_are_refused_naming_the_field(field: str, volume: Volume) -> None:
    volume.settings["ovms"]["models"] = {"m": BEYOND_OVMS[field]}
    volume.write()
    with pytest.raises(ConfigError) as refused:
        load_config(str(volume.config_path))
    message = str(refused.value)
    assert message.startswith(f"{volume.config_path}: ovms.models.m.{field.strip()}: "), message
    assert "maximum" in message or "minimum" in message, message


def test_the_agent_refuses_a_policy_ovms_would_misread_with_exit_2(volume: Volume) -> None:
    volume.settings["ovms"]["model_defaults"] = {"model_version_policy": {"latest": {"num_versions": 2**70}}}
    volume.write()
    result = agent_cli(volume, "status")
    assert result.returncode == 2, result
    assert result.stderr == (
        f"configuration error: {volume.config_path}: "
        "ovms.model_defaults.model_version_policy.latest.num_versions: "
        "1180591620717411303424 is greater than the maximum of 9223372036854775807"
        " (closest choice: {latest: ...})\n"
    )


@pytest.mark.parametrize("document", VALID, ids=range(len(VALID)))
def test_accepts_what_ovms_accepts(document: dict[str, Any]) -> None:
    assert schema.is_valid(schema.OVMS_CONFIG, copy.deepcopy(document))


@pytest.mark.parametrize("document", INVALID.values(), ids=INVALID.keys())
def test_rejects_what_ovms_rejects(document: dict[str, Any]) -> None:
    assert not schema.is_valid(schema.OVMS_CONFIG, document)
