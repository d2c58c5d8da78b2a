"""Names modelsync accepts, shared by the bucket layout and the gateway (modelsync/names.py)."""

from __future__ import annotations

import pytest

from modelsync import keys
from modelsync.names import MODEL_NAME, SERVED_VERSION, VERSION, is_request_id, model_problem


def test_keys_and_the_gateway_read_model_names_with_one_pattern() -> None:
    assert keys.MODEL_NAME is MODEL_NAME and keys.VERSION is VERSION


@pytest.mark.parametrize("name", ["resnet", "a", "my.model-v2_x", "A" * 128])
def test_valid_model_names(name: str) -> None:
    assert model_problem(name, None) is None and keys.is_model_name(name)


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a/b", "a b", "A" * 129, "resnet\n", "é"])
def test_invalid_model_names_are_named_in_the_problem(name: str) -> None:
    problem = model_problem(name, None)
    assert problem is not None and problem.startswith("invalid model name")
    assert not keys.is_model_name(name)


def test_a_version_the_gateway_passes_on_may_be_a_label_but_one_in_the_bucket_is_a_number() -> None:
    assert model_problem("m", "v1.2") is None and SERVED_VERSION.fullmatch("v1.2")
    assert not keys.is_version("v1.2") and keys.is_version("12") and not keys.is_version("012")
    assert model_problem("m", "1\n") == "invalid model version '1\\n'"
    assert model_problem("m", "x" * 65) is not None


def test_request_ids_are_one_printable_token() -> None:
    assert is_request_id("abc-123_!~") and is_request_id("x" * 256)
    assert not any(is_request_id(v) for v in ["", "a b", "x" * 257, "tab\there", "line\n", "é"])
