"""modelsync: event-driven sync of ML models from MinIO into an OpenVINO Model Server volume.

This package holds what the webhook and the agent both need (configuration, the schemas,
object-key rules, atomic file writes). The two processes talk to each other only through
intent files that follow ``schemas/intent.schema.json``.
"""

__version__ = "0.1.0"
