"""Logging in the original sidecar's format, or one JSON object a line.

Text (default): ``2024-01-15 10:30:00 - model_sync - INFO - Successfully synced model my-model:1``.
JSON: ``{"time": ..., "level": ..., "logger": ..., "message": ..., "model": ..., "version": ...}``;
``model``, ``version`` and ``event`` come from a call's ``extra=``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

TEXT_FORMAT = "%(asctime)s - model_sync - %(levelname)s - %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
EXTRA_FIELDS = ("model", "version", "event", "path")
# Query parameters that carry a credential: urllib3's retry warnings quote the whole URL, and an
# STS call's URL holds the web identity token.
_SECRET_PARAM = re.compile(
    r"((?:WebIdentityToken|Token|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|LDAPPassword)=)[^&\s'\"]+",
    re.IGNORECASE,
)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _SECRET_PARAM.search(message):
            record.msg, record.args = _SECRET_PARAM.sub(r"\1***", message), None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                document[name] = getattr(record, name)
        if record.exc_info:
            document["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(document, default=str)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party request logs at DEBUG would print URLs with signed query strings.
    for noisy in ("urllib3", "watchdog", "botocore"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(level)))
