"""Object keys: what is unsafe (422), what is outside the layout (ignored), what is a model file."""

from __future__ import annotations

import pytest

from modelsync.errors import UnsafeKeyError
from modelsync.keys import (
    ObjectRef,
    check_safe,
    locate,
    model_prefix,
    parse_key,
    placement_problem,
    version_prefix,
)

UNSAFE = [
    "",
    "/etc/passwd",
    "/model/1/x",
    "model/1/../../../etc/passwd",
    "../model/1/x",
    "model/../1/x",
    "model/1/./x",
    "model\\1\\x",
    "model/1/x\x00.bin",
    "model/1/\x1bx",
    ".modelsync/intents/x.json",
    ".modelsync",
    "m/1/" + "é" * 511,  # 1,026 bytes: over S3's 1,024
    "m/1/model-\ud800.bin",  # a lone surrogate: no UTF-8 form, no S3 object, no file name
    "m/1/\udcff",
]


@pytest.mark.parametrize("key", UNSAFE)
def test_unsafe_keys_raise(key: str) -> None:
    with pytest.raises(UnsafeKeyError):
        check_safe(key)
    with pytest.raises(UnsafeKeyError):
        parse_key(key)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("resnet/1/model.xml", ObjectRef("resnet", 1, "model.xml")),
        ("resnet/12/sub/dir/file.bin", ObjectRef("resnet", 12, "sub/dir/file.bin")),
        ("my-model_v2.1/3/saved_model.pb", ObjectRef("my-model_v2.1", 3, "saved_model.pb")),
        ("m/9223372036854775807/f", ObjectRef("m", 2**63 - 1, "f")),
        ("m/1/%2e%2e", ObjectRef("m", 1, "%2e%2e")),  # a literal name once decoded: harmless
    ],
)
def test_layout_keys(key: str, expected: ObjectRef) -> None:
    assert parse_key(key) == expected


@pytest.mark.parametrize(
    "key",
    [
        "readme.txt",
        "resnet/model.xml",
        "resnet/1",
        "resnet/1/",
        "resnet/0/model.xml",
        "resnet/01/model.xml",
        "resnet/v1/model.xml",
        "resnet/-1/model.xml",
        "resnet/9223372036854775808/x",
        "my model/1/model.onnx",
        ".hidden/1/x",
        "resnet/1//x",
        "resnet/1/" + "a" * 256,
    ],
)
def test_keys_outside_the_layout_are_ignored(key: str) -> None:
    assert parse_key(key) is None


def test_single_model_layout() -> None:
    assert parse_key("3/model.xml", "face") == ObjectRef("face", 3, "model.xml")
    assert parse_key("other/3/model.xml", "face") == ObjectRef("other", 3, "model.xml")
    assert parse_key("3/model.xml") is None
    assert version_prefix("face", 3, "face") == "3/"
    assert version_prefix("other", 3, "face") == "other/3/"


def test_with_model_name_its_prefix_is_outside_the_layout() -> None:
    # One rule for every reader: the root holds that model; "<model_name>/<v>/" names nothing.
    assert parse_key("face/3/model.xml", "face") is None
    assert locate("face/3/model.xml", "face") is None
    assert locate("3/model.xml", "face") == ("face", 3, "model.xml")
    assert locate("face/3/model.xml") == ("face", 3, "model.xml")  # without model_name: a model
    assert model_prefix("face", "face") == ""
    assert model_prefix("other", "face") == "other/"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("m/1/" + "a" * 256, "over the file system's limit of 255 bytes for a file name (NAME_MAX)"),
        ("m/1/sub/" + "é" * 128 + "/x", "path segment of 256 bytes"),
        ("m/1//x", "empty path segment"),
        ("m/1/a//b", "empty path segment"),
        ("m/1/../../x", "'.' or '..' path segment"),
        ("m/1/a\\b", "backslash in key"),
        ("m/1/a\x07b", "NUL or control character in key"),
    ],
)
def test_keys_under_a_version_that_cannot_be_files_are_located_with_a_reason(key: str, reason: str) -> None:
    located = locate(key)
    assert located is not None and located[:2] == ("m", 1)
    problem = placement_problem(key, located[2])
    assert problem is not None and reason in problem
    assert placement_problem("m/1/" + "a" * 200, "a" * 200, name_max=143) is not None  # eCryptfs-like
    assert placement_problem("m/1/ok/file.bin", "ok/file.bin") is None
