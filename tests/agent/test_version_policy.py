"""Only the versions OVMS will serve: ``model_version_policy`` decides what is downloaded and kept.

The agent reaches moto through a recording server, so each GET it sends is counted on the
server's side, not by the agent's own bookkeeping.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.versionpolicy import VersionPolicy
from modelsync.config import OvmsConfig
from modelsync.intents import IntentWriter
from tests.support.helpers import served_models, wait_for
from tests.support.intents import put_intent
from tests.support.s3 import Bucket
from tests.support.volume import Volume
from tests.support.wsgirig import Served, moto_s3


def gets(s3: Served, bucket: Bucket, model: str) -> dict[int, int]:
    """GETs of each version's objects (listings are GETs of the bucket, not counted)."""
    counted: dict[int, int] = {}
    for environ in s3.recorder.seen:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "GET" and path.startswith(f"/{bucket.name}/{model}/"):
            version = int(path.split("/")[3])
            counted[version] = counted.get(version, 0) + 1
    return counted


def versions_on_disk(volume: Volume, model: str) -> set[int]:
    directory = volume.models / model
    return {int(p.name) for p in directory.iterdir() if p.name.isdigit()} if directory.is_dir() else set()


def served_versions(volume: Volume, model: str) -> set[int]:
    return versions_on_disk(volume, model) if model in served_models(volume.ovms_config) else set()


def test_latest_two_downloads_only_the_two_highest_and_drops_the_oldest_after_an_upload(
    volume: Volume, bucket: Bucket, start_agent, serve
) -> None:
    s3 = serve(moto_s3())
    for version in range(1, 6):
        bucket.put(f"clf/{version}/model.bin", f"weights {version}".encode())
    bucket.put("other/1/model.bin", b"no policy")
    bucket.put("other/2/model.bin", b"no policy")
    volume.settings["minio"]["endpoint"] = s3.url
    volume.settings["ovms"]["models"] = {"clf": {"model_version_policy": {"latest": {"num_versions": 2}}}}
    volume.settings["sync"]["interval"] = 600  # only the upload's event can explain what follows
    volume.write()
    start_agent()
    wait_for(lambda: served_versions(volume, "clf") == {4, 5}, what="the two highest versions served")
    wait_for(lambda: served_versions(volume, "other") == {1, 2}, what="a model without a policy keeps all")
    assert gets(s3, bucket, "clf") == {4: 1, 5: 1}, "versions 1-3 cost no bandwidth"
    config = served_models(volume.ovms_config)
    assert config["clf"]["model_version_policy"] == {"latest": {"num_versions": 2}}

    # Version 6 arrives (as an event): it is served, then version 4 leaves the disk.
    bucket.put("clf/6/model.bin", b"weights 6")
    webhook_event(volume, bucket, "clf/6/model.bin")
    wait_for(lambda: versions_on_disk(volume, "clf") == {5, 6}, 30, what="6 in, 4 out")
    assert (volume.models / "clf" / "6" / "model.bin").read_bytes() == b"weights 6"
    assert gets(s3, bucket, "clf") == {4: 1, 5: 1, 6: 1}

    # An event for a version the policy does not keep downloads nothing.
    bucket.put("clf/2/model.bin", b"a late fix of an old version")
    webhook_event(volume, bucket, "clf/2/model.bin")
    bucket.put("clf/7/model.bin", b"weights 7")
    webhook_event(volume, bucket, "clf/7/model.bin")
    wait_for(lambda: versions_on_disk(volume, "clf") == {6, 7}, 30, what="7 in, 5 out")
    assert 2 not in gets(s3, bucket, "clf")


def test_specific_versions_only(volume: Volume, bucket: Bucket, start_agent) -> None:
    for version in (1, 2, 3):
        bucket.put(f"pinned/{version}/model.bin", b"x")
    volume.settings["ovms"]["model_defaults"] = {
        "model_version_policy": {"specific": {"versions": [1, 3, 9]}}
    }
    volume.write()
    start_agent()
    wait_for(lambda: versions_on_disk(volume, "pinned") == {1, 3}, what="the listed versions the bucket has")


def webhook_event(volume: Volume, bucket: Bucket, key: str) -> None:
    """The intent the webhook writes for MinIO's event of this upload."""
    put_intent(IntentWriter(volume.intents), bucket.name, key)


@pytest.mark.parametrize(
    ("policy", "present", "kept"),
    [
        (None, {1, 2, 3}, {1, 2, 3}),
        ({"all": {}}, {1, 2, 3}, {1, 2, 3}),
        ({"latest": {"num_versions": 2}}, {1, 7, 3, 10}, {7, 10}),
        ({"latest": {"num_versions": 5}}, {1, 2}, {1, 2}),
        ({"specific": {"versions": [2, 4]}}, {1, 2, 3}, {2}),
    ],
)
def test_the_policy_keeps(policy: dict[str, object] | None, present: set[int], kept: set[int]) -> None:
    settings = {"m": {"model_version_policy": policy}} if policy else {}
    ovms = OvmsConfig(config_path=Path("/models/config.json"), base_path=Path("/models"), models=settings)
    listings = {("m", v): {} for v in present} | {("n", 1): {}}
    assert {v for m, v in VersionPolicy(ovms).keep(listings) if m == "m"} == kept
    assert ("n", 1) in VersionPolicy(ovms).keep(listings), "another model is judged on its own"
