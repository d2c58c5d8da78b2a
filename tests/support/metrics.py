"""Reading a Prometheus endpoint the way a scraper does."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


def metric(url: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
        for sample in family.samples:
            if sample.name == name and (labels is None or sample.labels == labels):
                return sample.value
    return None
