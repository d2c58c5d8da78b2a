"""bench/goals.py and bench/conditions.py: how a goal is judged and what a report records.
No benchmark runs here."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bench import conditions
from bench.goals import Goal, collect, interleave, table


def test_a_goal_is_judged_on_the_median_not_the_best_or_worst_sample() -> None:
    floor = Goal("b", "events/s vs bare", (0.2, 0.6, 0.7), 0.5)
    ceiling = Goal("b", "p99", (0.010, 0.030, 0.020), 0.025, higher_is_better=False, unit="s")
    assert floor.met and floor.median == 0.6
    assert ceiling.met and ceiling.median == 0.020  # one sample over the ceiling does not fail it
    assert not Goal("b", "p99", (0.030, 0.031, 0.001), 0.025, higher_is_better=False).met
    assert Goal("b", "none", (), 1.0).met is False


def test_interleave_alternates_the_order_and_ratios_pair_rounds() -> None:
    calls: list[str] = []
    values = {"a": iter([2.0, 4.0, 6.0]), "b": iter([1.0, 1.0, 2.0])}

    def variant(name: str) -> Callable[[], float]:
        def run() -> float:
            calls.append(name)
            return next(values[name])

        return run

    rounds = interleave({"a": variant("a"), "b": variant("b")}, repeats=3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert rounds.ratios("a", "b") == [2.0, 4.0, 3.0]


def test_goals_round_trip_through_a_report_into_the_table(tmp_path: Path) -> None:
    goal = Goal("reconcile", "reconcile / bare listing", (1.2, 1.0, 1.05), 1.1, higher_is_better=False)
    report = tmp_path / "reconcile-quick.json"
    report.write_text(json.dumps({"goals": [goal.as_dict()]}))
    (tmp_path / "broken.json").write_text("{not json")
    collected = collect([report, tmp_path / "broken.json", tmp_path / "missing.json"])
    assert collected == [goal]
    lines = table(collected).splitlines()
    assert lines[0].split() == ["benchmark", "goal", "floor", "median", "spread", "n", "met"]
    assert "<= 1.1" in lines[2] and "1.05" in lines[2] and lines[2].rstrip().endswith("yes")
    short = Goal("download", "agent / loop", (2.4, 2.5, 2.3), 3.0, note="moto's bound 2.9")
    lines = table([goal, short]).splitlines()
    assert lines[3].rstrip().endswith("NO") and lines[4:] == ["NO: download, agent / loop: moto's bound 2.9"]


def test_cpu_shares_and_mount_lookup_from_proc_text() -> None:
    before = conditions.cpu_ticks("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n")
    after = conditions.cpu_ticks("cpu  200 0 100 900 20 0 0 80 0 0\n")
    # 300 ticks: 100 idle, 10 iowait, 40 steal, 150 user + system
    assert conditions.cpu_shares(before, after) == {"steal_pct": 13.33, "iowait_pct": 3.33, "busy_pct": 50.0}
    mounts = "/dev/vda / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n/dev/vdb /tmpdata xfs rw 0 0\n"
    info = conditions.filesystem_of(Path("/tmp/x"), mounts)
    assert (info["device"], info["type"], info["mount_point"]) == ("tmpfs", "tmpfs", "/tmp")
    assert conditions.filesystem_of(Path("/tmpx"), mounts)["mount_point"] == "/"  # not a prefix match
