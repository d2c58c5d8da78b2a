"""Names and sizes the bucket may hold that the volume or config.json cannot take as they are.

A metadata.json over the manifest bound that is plain metadata; a file whose name the volume
cannot hold; two keys naming one version under ``ovms.model_name``; a bucket model named like
a hand-written config.json entry. Real agent processes, moto's S3 server, a real file system.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agent import manifest
from agent.placement import parent_directories, path_too_long
from tests.support.helpers import free_port, http_ok, minio_event, served_models, wait_for
from tests.support.metrics import metric
from tests.support.processes import agent_cli
from tests.support.s3 import Bucket
from tests.support.volume import Volume

LONG = "a" * 300  # one path segment over NAME_MAX (255 bytes)


def status(volume: Volume) -> dict[str, Any]:
    try:
        return dict(json.loads(volume.status.read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def version_error(volume: Volume, model: str, version: int) -> str:
    versions = status(volume).get("models", {}).get(model, {}).get("versions", {})
    return str(versions.get(str(version), {}).get("error") or "")


# -- defect 4: a large metadata.json -------------------------------------------------------------


def test_a_plain_metadata_json_over_the_manifest_bound_is_a_file_like_any_other(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    big_object = json.dumps({"labels": ["x" * 100] * 12_000, "info": {"files": "nested, not a manifest"}})
    big_array = json.dumps([{"files": i} for i in range(120_000)])  # not an object: never a manifest
    assert len(big_object) > manifest.MAX_MANIFEST_BYTES and len(big_array) > manifest.MAX_MANIFEST_BYTES
    bucket.put("m/1/model.bin", b"one")
    bucket.put("m/1/metadata.json", big_object.encode())
    bucket.put("m/2/model.bin", b"two")
    bucket.put("m/2/metadata.json", big_array.encode())
    hostile = b'{"a": ' + b"[" * 1_500_000  # nested deep: must not cost memory by its depth
    bucket.put("m/3/model.bin", b"three")
    bucket.put("m/3/metadata.json", hostile)
    agent = start_agent()
    wait_for(lambda: served_models(volume.ovms_config).get("m"), what="m served")
    wait_for(lambda: all((volume.models / "m" / str(v)).is_dir() for v in (1, 2, 3)), what="m:1, m:2, m:3")
    assert (volume.models / "m" / "3" / "metadata.json").read_bytes() == hostile
    assert agent.alive()
    assert (volume.models / "m" / "1" / "metadata.json").read_bytes() == big_object.encode()
    assert (volume.models / "m" / "2" / "metadata.json").read_bytes() == big_array.encode()
    assert "larger than" not in agent.log and "failed" not in agent.log


def test_a_manifest_over_the_bound_fails_its_version_with_a_clear_error(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    volume.settings["sync"]["max_attempts"] = 2
    volume.write()
    bucket.put("m/1/model.bin", b"one")
    document = {"files": {"model.bin": 3}, "notes": "n" * (manifest.MAX_MANIFEST_BYTES + 10)}
    bucket.put("m/1/metadata.json", json.dumps(document).encode())
    bucket.put("ok/1/model.bin", b"fine")
    agent = start_agent()
    wait_for(lambda: "ok" in served_models(volume.ovms_config), what="the other model served")
    error = wait_for(lambda: version_error(volume, "m", 1), what="m:1's error in status.json")
    assert "metadata.json is a manifest (it has a files map)" in error
    assert f"over the {manifest.MAX_MANIFEST_BYTES} bytes a manifest may have" in error
    assert "model m:1: metadata.json is a manifest" in agent.log
    assert not (volume.models / "m" / "1").exists()
    assert "m" not in served_models(volume.ovms_config)


def test_has_files_key_reads_only_the_top_level(tmp_path: Path) -> None:
    cases = {
        b'{"files": {"a": 1}}': True,
        b'{"a": {"files": 1}, "b": [1, {"files": 2}]}': False,
        b'{"a": 1, "fil\\u0065s": {}}': True,  # escaped: JSON's own key
        b'[{"files": 1}]': False,
        b'"files"': False,
        b"not json at all": False,
        b'{"a": 1, "files": {"x": 1}, "b": ': True,  # found before the document breaks
        b"": False,
        b'{"a": ' + b"[" * 1_000_000: False,  # nested a million deep: memory must not grow with it
        b'{"a": ' + b'{"b": ' * 500_000: False,
    }
    for data, expected in cases.items():
        path = tmp_path / "metadata.json"
        path.write_bytes(data)
        with open(path, "rb") as handle:
            assert manifest.has_files_key(handle) is expected, data


# -- defect 5: a file the volume cannot hold ---------------------------------------------------


def test_a_file_the_volume_cannot_hold_refuses_the_version_and_keeps_the_previous_one(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    volume.settings["sync"]["max_attempts"] = 2
    volume.write()
    bucket.put("m/1/model.bin", b"one")
    agent = start_agent()
    wait_for(lambda: "m" in served_models(volume.ovms_config), what="m:1 served")
    served_before = volume.ovms_config.read_bytes()
    # An update of the served version and a new version, each with a name too long for the volume.
    bucket.put("m/1/model.bin", b"one, updated")
    bucket.put(f"m/1/{LONG}", b"tokenizer")
    bucket.put("m/2/model.bin", b"two")
    bucket.put(f"m/2/sub/{LONG}.json", b"{}")
    result = agent_cli(volume, "resync", "--model", "m", "--wait", "30")
    assert result.returncode == 1, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "failed"
    assert set(outcome["versions"]) == {"m:1", "m:2"}
    assert all(v in ("retrying", "failed") for v in outcome["versions"].values()), outcome
    for version, key in ((1, f"m/1/{LONG}"), (2, f"m/2/sub/{LONG}.json")):
        error = wait_for(lambda v=version: version_error(volume, "m", v), what=f"m:{version}'s error")
        assert f"key {key!r} in bucket {bucket.name} cannot be a file on this volume" in error
        assert "over the file system's limit of 255 bytes for a file name (NAME_MAX)" in error
        assert f"model m:{version}: key {key!r}" in agent.log
    # The previous version is still what is served, byte for byte; no version 2 appeared.
    assert (volume.models / "m" / "1" / "model.bin").read_bytes() == b"one"
    assert os.listdir(volume.models / "m" / "1") == ["model.bin"]
    assert not (volume.models / "m" / "2").exists()
    assert volume.ovms_config.read_bytes() == served_before
    assert not [p for p in (volume.models / "m").iterdir() if p.name.startswith(".staging")]
    # Once the bucket's version fits the volume, it is served whole.
    bucket.delete(f"m/1/{LONG}")
    bucket.delete(f"m/2/sub/{LONG}.json")
    result = agent_cli(volume, "resync", "--model", "m", "--wait", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (volume.models / "m" / "1" / "model.bin").read_bytes() == b"one, updated"
    assert (volume.models / "m" / "2" / "model.bin").read_bytes() == b"two"


def test_a_path_over_path_max_is_named_with_the_limit(tmp_path: Path) -> None:
    deep = tmp_path / "/".join(["d" * 200] * 15)  # a models directory of about 3,000 bytes
    path = "/".join(["p" * 250] * 4)
    problem = path_too_long(deep, "m", 1, path, 4096)
    assert problem is not None
    assert "over the file system's limit of 4096 bytes (PATH_MAX)" in problem
    assert path_too_long(tmp_path, "m", 1, path, 4096) is None


def test_a_file_where_other_keys_need_a_directory_is_found() -> None:
    assert parent_directories(["a", "a/b/c", "x/y"]) == {"a", "a/b", "x"}
    assert "a" in parent_directories(["a", "a/b"])  # m/1/a and m/1/a/b: one must go


# -- defect 7: ovms.model_name and two keys for one version -------------------------------------


def test_with_model_name_the_root_layout_is_the_model_and_never_flaps(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    volume.settings["ovms"]["model_name"] = "face"
    volume.settings["sync"]["interval"] = 0.5  # many full reconciles during the test
    volume.write()
    bucket.put("1/model.bin", b"root layout")
    bucket.put("face/1/model.bin", b"model-name prefix")  # would be face:1 too
    bucket.put("other/1/model.bin", b"another model")
    agent = start_agent()
    published = volume.models / "face" / "1" / "model.bin"
    wait_for(published.exists, what="face:1")
    assert published.read_bytes() == b"root layout"
    inode = published.stat().st_ino
    at = wait_for(lambda: (status(volume).get("last_reconcile") or {}).get("at"), what="a reconcile")
    for _ in range(3):  # full reconciles: the whole bucket is listed
        at = wait_for(lambda a=at: (s := status(volume)["last_reconcile"]["at"]) != a and s, what="reconcile")
    for scope in (["--model", "face", "--version", "1"], ["--model", "face"]):  # version and model prefixes
        result = agent_cli(volume, "resync", *scope, "--wait", "20")
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["versions"] == {"face:1": "in_sync"}
    # An event for the shadowed key is outside the layout: counted as ignored, no intent.
    webhook = start_webhook()
    answer = webhook.post_event(minio_event(bucket.name, "face/1/model.bin"))
    assert answer.status_code == 200 and answer.json()["ignored"] == 1, answer.text
    assert published.read_bytes() == b"root layout"
    assert published.stat().st_ino == inode, "face:1 was replaced"
    current = status(volume)
    assert current["counters"]["downloaded_files"] == 2  # face:1 and other:1, once each
    assert current["last_reconcile"]["ignored"] == 1  # face/1/model.bin
    assert agent.log.count("ignoring 1 object(s) under face/: with ovms.model_name=face") == 1
    assert set(served_models(volume.ovms_config)) == {"face", "other"}


# -- defect 8: a hand-written config.json entry named like a bucket model -----------------------


def test_a_hand_written_entry_wins_a_name_collision_until_the_operator_removes_it(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    port = free_port()
    volume.settings["sync"]["metrics_port"] = port
    volume.write()
    hand = {"name": "shadow", "base_path": "/opt/models/shadow", "target_device": "CPU"}
    volume.ovms_config.write_text(json.dumps({"model_config_list": [{"config": hand}]}))
    bucket.put("shadow/1/model.onnx", b"bucket's shadow")
    bucket.put("other/1/model.onnx", b"other")
    agent = start_agent()
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: "other" in served_models(volume.ovms_config), what="other served")
    wait_for((volume.models / "shadow" / "1" / "model.onnx").exists, what="shadow's files on disk")
    # Both versions went into config.json in one swap: the hand-written entry must be untouched.
    assert served_models(volume.ovms_config)["shadow"] == hand
    wait_for(lambda: "shadow" in status(volume).get("collisions", {}), what="the collision in status.json")
    assert status(volume)["collisions"]["shadow"] == {
        "hand_written_base_path": "/opt/models/shadow",
        "bucket_versions_in": str(volume.models / "shadow"),
    }
    assert "model shadow: config.json has a hand-written entry of that name" in agent.log
    wait_for(lambda: http_ok(url), what="metrics")
    assert metric(url, "modelsync_agent_config_collisions") == 1.0
    assert "NAME COLLISION: shadow" in agent_cli(volume, "status").stdout

    # The bucket's model goes away: the hand-written entry stays, untouched.
    bucket.delete("shadow/1/model.onnx")
    result = agent_cli(volume, "resync", "--model", "shadow", "--wait", "20")
    assert json.loads(result.stdout)["versions"] == {"shadow:1": "removed"}, result.stdout
    wait_for(lambda: not status(volume).get("collisions"), what="no collision once the model is gone")
    assert served_models(volume.ovms_config)["shadow"] == hand
    assert metric(url, "modelsync_agent_config_collisions") == 0.0

    # It comes back, and the operator resolves the collision by removing the hand-written entry.
    bucket.put("shadow/1/model.onnx", b"bucket's shadow")
    agent_cli(volume, "resync", "--model", "shadow", "--wait", "20")
    wait_for(lambda: "shadow" in status(volume).get("collisions", {}), what="the collision again")
    assert served_models(volume.ovms_config)["shadow"] == hand
    downloads = status(volume)["counters"]["downloaded_files"]
    document = json.loads(volume.ovms_config.read_text())
    document["model_config_list"] = [e for e in document["model_config_list"] if e["config"] != hand]
    tmp = volume.ovms_config.with_name(".operator-edit")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, volume.ovms_config)
    wait_for(
        lambda: (
            served_models(volume.ovms_config).get("shadow", {}).get("base_path")
            == str(volume.models / "shadow")
        ),
        what="the bucket's shadow served once the hand-written entry is gone",
    )
    wait_for(lambda: not status(volume).get("collisions"), what="collision cleared")
    assert "model shadow: the name collision in config.json is resolved" in agent.log
    assert status(volume)["counters"]["downloaded_files"] == downloads, "served from disk, no download"
