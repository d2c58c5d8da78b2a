"""Containment: no key, intent file, planted symlink or config value leads the agent outside.

Real agent and gunicorn processes, a real S3 endpoint (traversal keys are planted with boto3,
which does not refuse them the way the minio client does), a real file system. Outside the
models directory sits a directory of sentinel files; every test ends by checking it is
byte-for-byte and inode-for-inode what it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from modelsync import atomic
from modelsync.intents import new_intent_id
from tests.support.helpers import md5, minio_event, minio_record, served_models, wait_for
from tests.support.intents import failed_records, hostile_intent, intent_files
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, Bucket, S3Server
from tests.support.volume import Volume

SENTINEL = b"outside: must never be read, linked, moved or written"


def tree(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every entry under ``root`` (not following symlinks): kind, inode, size, content hash."""
    found: dict[str, tuple[str, int, int, str]] = {}
    if not root.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if path.is_symlink():
                found[str(path.relative_to(root))] = ("link", info.st_ino, 0, os.readlink(path))
            elif path.is_dir():
                found[str(path.relative_to(root))] = ("dir", info.st_ino, 0, "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path.relative_to(root))] = ("file", info.st_ino, info.st_size, digest)
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the models volume, holding what an attacker would like to reach."""
    root = tmp_path / "outside"
    (root / "v").mkdir(parents=True)
    (root / "secret.txt").write_bytes(SENTINEL)
    (root / "v" / "model.bin").write_bytes(SENTINEL)
    (root / "v" / "extra.bin").write_bytes(SENTINEL)
    return root


def raw_s3(s3_server: S3Server) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


def agent_status(volume: Volume) -> dict[str, Any]:
    try:
        return dict(json.loads(volume.status.read_text()))
    except (FileNotFoundError, ValueError):
        return {}


TRAVERSAL_KEYS = [
    "m/1/../../../outside/pwned",
    "../outside/1/pwned",
    "m/../../outside/pwned",
    "m/1/./pwned",
    "/abs/1/pwned",
    "//abs/1/pwned",
    "m/1/..\\..\\pwned",
    ".modelsync/intents/0000000000000000001-aaaaaaaaaaaa.json",
    ".modelsync/state.json",
]


def test_traversal_and_absolute_keys_in_the_bucket_touch_nothing_outside(
    volume: Volume, bucket: Bucket, s3_server: S3Server, start_agent, start_webhook, outside: Path
) -> None:
    before = tree(outside)
    s3 = raw_s3(s3_server)
    for key in TRAVERSAL_KEYS:
        s3.put_object(Bucket=bucket.name, Key=key, Body=b"pwned")
    # Literal percent signs are a legal (odd) key: it stays a file inside the version.
    bucket.put("good/1/%2e%2e/model.bin", b"fine")
    bucket.put("good/1/model.bin", b"fine")
    agent = start_agent()
    webhook = start_webhook()
    for key in TRAVERSAL_KEYS:
        response = webhook.post_event(minio_event(bucket.name, key))
        assert response.status_code in (200, 422), response.text
    # Encoded traversal as MinIO would escape it, and double-encoded.
    for escaped in (
        "m%2F1%2F%2e%2e%2F%2e%2e%2Foutside%2Fpwned",
        "%2E%2E%2F1%2Fpwned",
        "m%2F1%2F%252e%252e%2Fx",
    ):
        record = minio_record(bucket.name, "x")
        record["s3"]["object"]["key"] = escaped
        response = webhook.post_event({"Records": [record]})
        assert response.status_code in (200, 422), response.text
        if "%25" not in escaped:
            assert response.status_code == 422
    wait_for(lambda: "good" in served_models(volume.ovms_config), what="the legitimate model")
    webhook.proc.stop()  # its log segment is finished: the agent deletes it once all is done
    wait_for(lambda: not intent_files(volume.intents), what="intents consumed")
    assert (volume.models / "good" / "1" / "%2e%2e" / "model.bin").read_bytes() == b"fine"
    assert tree(outside) == before
    assert not list(volume.root.rglob("pwned")), "a traversal key produced a file"
    assert set(served_models(volume.ovms_config)) == {"good"}
    assert "skipping bucket object" in agent.log
    state = json.loads((volume.models / ".modelsync" / "state.json").read_text())
    assert set(state["models"]) == {"good"}


def test_symlinked_model_directory_is_refused(
    volume: Volume, bucket: Bucket, start_agent, outside: Path
) -> None:
    (volume.models / "evil").symlink_to(outside)
    before = tree(outside)
    bucket.put("evil/1/model.bin", b"would land outside")
    bucket.put("fine/1/model.bin", b"ok")
    volume.settings["sync"]["max_attempts"] = 2
    volume.write()
    agent = start_agent()
    wait_for(lambda: "fine" in served_models(volume.ovms_config), what="fine:1")
    wait_for(lambda: "refusing to use" in agent.log, what="the refusal in the log")
    assert "evil" not in served_models(volume.ovms_config)
    assert tree(outside) == before
    assert (volume.models / "evil").is_symlink()


def test_symlinked_version_directory_is_never_read_through(
    volume: Volume, bucket: Bucket, start_agent, outside: Path
) -> None:
    """A version directory replaced by a symlink to outside files with the right content.

    Reusing "unchanged" files would hard-link the outside inodes into the published version
    (and hash outside files to find out): the agent must download instead.
    """
    bucket.put("m/1/model.bin", b"v1")
    bucket.put("m/2/model.bin", SENTINEL)
    bucket.put("m/2/extra.bin", SENTINEL)
    agent = start_agent()
    wait_for(lambda: (volume.models / "m" / "2" / "model.bin").exists(), what="m:2")
    assert agent.stop() == 0
    # The attacker swaps m/2 for a symlink to outside files of identical content, and plants
    # symlinked leftovers that a restart's clean-up must not follow.
    version = volume.models / "m" / "2"
    for child in version.iterdir():
        child.unlink()
    version.rmdir()
    version.symlink_to(outside / "v")
    (volume.models / "m" / ".staging-9-deadbeef").symlink_to(outside)
    (volume.models / "m" / ".trash-9-deadbeef").symlink_to(outside)
    state_path = volume.models / ".modelsync" / "state.json"
    state = json.loads(state_path.read_text())
    del state["models"]["m"]["2"]  # as if the agent crashed before recording m:2
    state_path.write_text(json.dumps(state))
    before = tree(outside)
    outside_inodes = {(outside / "v" / n).stat().st_ino for n in ("model.bin", "extra.bin")}

    start_agent()
    wait_for(lambda: not (volume.models / "m" / "2").is_symlink(), what="m:2 replaced by a real directory")
    published = volume.models / "m" / "2"
    for name in ("model.bin", "extra.bin"):
        assert (published / name).read_bytes() == SENTINEL
        assert (published / name).stat().st_ino not in outside_inodes, f"{name} is a link to an outside inode"
    assert tree(outside) == before
    wait_for(
        lambda: not [p for p in (volume.models / "m").iterdir() if p.name.startswith((".staging", ".trash"))],
        what="no staging/trash entries left in m/",
    )
    assert tree(outside) == before


def test_symlink_inside_a_version_is_not_followed_on_update(
    volume: Volume, bucket: Bucket, start_agent, outside: Path
) -> None:
    bucket.put("m/1/sub/model.bin", SENTINEL)
    bucket.put("m/1/config.txt", b"a")
    agent = start_agent()
    wait_for(lambda: (volume.models / "m" / "1" / "sub" / "model.bin").exists(), what="m:1")
    assert agent.stop() == 0
    sub = volume.models / "m" / "1" / "sub"
    (sub / "model.bin").unlink()
    sub.rmdir()
    sub.symlink_to(outside / "v")
    before = tree(outside)
    outside_inode = (outside / "v" / "model.bin").stat().st_ino
    bucket.put("m/1/config.txt", b"b")  # an update: sub/model.bin is "unchanged"
    start_agent()
    published = volume.models / "m" / "1"
    wait_for(lambda: (published / "config.txt").read_bytes() == b"b", what="m:1 updated")
    assert not (published / "sub").is_symlink()
    assert (published / "sub" / "model.bin").stat().st_ino != outside_inode
    assert tree(outside) == before


def test_hostile_intent_files_move_to_failed_and_touch_nothing(
    volume: Volume, bucket: Bucket, start_agent, outside: Path
) -> None:
    volume.intents.mkdir(parents=True)
    agent = start_agent()
    before = tree(outside)
    drop: dict[str, str] = {}  # intent file name -> what is wrong with it

    def write(intent: dict[str, Any] | bytes, what: str, name: str | None = None) -> None:
        if isinstance(intent, dict):
            name = name or f"{intent['id']}.json"
            data = json.dumps(intent).encode()
        else:
            name, data = name or f"{new_intent_id()}.json", intent
        (volume.intents / name).write_bytes(data)
        drop[name] = what

    b = bucket.name
    write(hostile_intent(b, key="m/1/../../../outside/pwned", path="../../../outside/pwned"), "traversal")
    write(hostile_intent(b, key="/outside/1/pwned", model="outside", path="pwned"), "absolute key")
    write(hostile_intent(b, model="../outside", key="../outside/1/pwned", path="pwned"), "model name")
    write(hostile_intent(b, key="m/1/model.bin", path="../../../outside/secret.txt"), "path != key")
    write(hostile_intent(b, key="m/1/x", model="m", version=1, path="x", bucket="elsewhere"), "bucket")
    write(hostile_intent(b, key=".modelsync/state.json", model=".modelsync", path="state.json"), "own area")
    write(hostile_intent(b, id="0000000000000000001-aaaaaaaaaaaa"), "id mismatch", f"{new_intent_id()}.json")
    write(hostile_intent(b, extra="field"), "extra field")
    write({"intent_version": 1, "id": "x", "kind": "resync", "model": "../.."}, "resync outside")
    write(b"{not json", "not JSON")
    write(b"\xff\xfe\x00", "not UTF-8")
    write(b" " * (70 * 1024) + b"{}", "too large")
    write(b"[1, 2, 3]", "not an object")
    for name, what in [("link", "symlink to a secret"), ("fifo", "named pipe"), ("dir", "a directory")]:
        file_name = f"{new_intent_id()}.json"
        target = volume.intents / file_name
        if name == "link":
            target.symlink_to(outside / "secret.txt")
        elif name == "fifo":
            os.mkfifo(target)
        else:
            target.mkdir()
            (target / "inner.json").write_text("{}")
        drop[file_name] = what

    def settled() -> bool:
        names = {p.name for p in volume.intents.iterdir()}
        return not names & set(drop)

    wait_for(settled, 20, what="every hostile intent handled")
    assert agent.alive(), agent.log
    failed = failed_records(volume)
    for name, what in drop.items():
        assert name in failed, f"{what}: not in failed/ ({sorted(failed)})"
        assert failed[name]["error"], what
        assert SENTINEL.decode() not in json.dumps(failed[name]), f"{what}: outside content was read"
    assert tree(outside) == before
    assert not list(volume.root.rglob("pwned"))
    # The agent goes on working afterwards.
    data = b"legit"
    bucket.put("legit/1/model.bin", data)
    legit = hostile_intent(
        b, key="legit/1/model.bin", model="legit", path="model.bin", etag=md5(data), size=5
    )
    # Written as the contract says (temp file, rename), unlike the hostile ones above.
    atomic.write_json(volume.intents / f"{legit['id']}.json", legit)
    wait_for(lambda: "legit" in served_models(volume.ovms_config), what="a legitimate intent afterwards")
    assert agent.alive()


def test_config_values_cannot_point_outside(volume: Volume, start_agent) -> None:
    """A relative models_path, a traversal model_name: refused at start-up, nothing written."""
    for section, key, value in [
        ("sync", "models_path", "../outside"),
        ("ovms", "model_name", "../outside"),
        ("ovms", "base_path", "relative/path"),
    ]:
        original = json.loads(json.dumps(volume.settings))
        volume.settings[section][key] = value
        volume.write()
        proc = start_agent(wait_ready=False)
        code = proc.popen.wait(timeout=30)
        assert code == 2, proc.log
        assert f"{section}.{key}" in proc.log
        assert "Traceback" not in proc.log
        volume.settings = original
        volume.write()
    assert not (volume.root / "outside").exists()
    assert not volume.ovms_config.exists()
