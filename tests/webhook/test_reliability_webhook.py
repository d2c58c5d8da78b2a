"""The webhook under fire: SIGKILL mid-traffic loses no acknowledged event; fuzzing finds no 5xx.

Both against real gunicorn processes. ``bench/soak.py`` runs the long versions.
"""

from __future__ import annotations

import json
import os

from tests.support.s3 import Bucket
from tests.support.volume import Volume
from tests.support.webhookfaults import fuzz_webhook, kill_during_traffic


def test_sigkill_of_the_webhook_loses_no_acknowledged_event(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    rounds = int(os.environ.get("MODELSYNC_WEBHOOK_KILL_ROUNDS", "4"))
    figures = kill_during_traffic(start_webhook, volume, bucket, rounds)
    print(f"\nwebhook kills: {json.dumps(figures.as_dict())}")
    assert figures.acknowledged_but_missing == 0
    assert figures.non_2xx == 0


def test_fuzzed_requests_never_get_a_5xx_nor_write_outside_the_intents(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    webhook = start_webhook()
    examples = int(os.environ.get("MODELSYNC_FUZZ_EXAMPLES", "300"))
    figures = fuzz_webhook(webhook, volume, bucket, examples)
    print(f"\nfuzz: {figures.cases} cases in {figures.seconds:.1f}s, statuses {figures.status_counts}")
    assert figures.cases >= examples * 0.9
