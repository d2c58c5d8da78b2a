"""A tiny OpenVINO IR model (identity on a 1x4 float tensor) with a manifest, and MinIO events."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

IDENTITY_XML = b"""<?xml version="1.0"?>
<net name="identity" version="11">
  <layers>
    <layer id="0" name="input" type="Parameter" version="opset1">
      <data shape="1,4" element_type="f32"/>
      <output><port id="0" precision="FP32" names="input"><dim>1</dim><dim>4</dim></port></output>
    </layer>
    <layer id="1" name="output" type="Result" version="opset1">
      <input><port id="0" precision="FP32"><dim>1</dim><dim>4</dim></port></input>
    </layer>
  </layers>
  <edges><edge from-layer="0" from-port="0" to-layer="1" to-port="0"/></edges>
</net>
"""
IDENTITY_BIN = b""


def files() -> dict[str, bytes]:
    model = {"model.xml": IDENTITY_XML, "model.bin": IDENTITY_BIN}
    manifest = {"files": {name: len(data) for name, data in model.items()}}
    return {**model, "metadata.json": json.dumps(manifest, indent=2).encode()}


def event(bucket: str, keys: list[str]) -> dict[str, Any]:
    """What MinIO would POST (one record per key; MinIO itself sends one per request)."""
    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{bucket}/{keys[0]}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="")}},
            }
            for key in keys
        ],
    }
