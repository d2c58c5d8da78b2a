"""What the tests share: rigs, real processes, S3 and volume helpers. No tests, no fixtures
(those are in the conftest.py files, which build on these)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: children run here
