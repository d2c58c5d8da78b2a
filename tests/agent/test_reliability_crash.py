"""Crash safety: SIGKILL the agent at random moments of a sync, restart it, check it converged.

No hook in the product: the bucket changes (new versions with and without a manifest, updated
files, deleted versions), a resync intent sets the agent going, and after a random delay it is
killed with SIGKILL; sometimes its successor is killed too while it recovers. After each kill
the disk must hold only complete versions and a valid config.json; after each restart the
agent must converge to the bucket, download exactly the files the disk lacked, and leave no
staging, trash or temp files behind. ``bench/soak.py`` runs the same rounds, more of them.
"""

from __future__ import annotations

import json
import os
import random
import time

from tests.support.crash import CrashRig
from tests.support.s3 import Bucket
from tests.support.volume import Volume


def test_sigkill_at_random_points_converges_without_leftovers(
    volume: Volume, bucket: Bucket, start_agent, record_property
) -> None:
    seed = int(os.environ.get("MODELSYNC_CRASH_SEED", time.time_ns() % 10**6))
    rig = CrashRig(bucket, volume, start_agent, random.Random(seed))
    try:
        figures = rig.run(int(os.environ.get("MODELSYNC_CRASH_ROUNDS", "30")))
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}, round {rig.figures.rounds}: {exc}") from None
    record_property("crash_figures", figures.as_dict())
    print(f"\ncrash rounds (seed {seed}): {json.dumps(figures.as_dict())}")
    assert figures.rounds >= 30
    assert figures.partial_versions_seen == 0 and figures.invalid_configs_seen == 0
    assert figures.leftovers_after_restart == 0
