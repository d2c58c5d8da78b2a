"""modelsync: event-driven sync of ML models from MinIO into an OpenVINO Model Server volume,
and a prediction gateway in front of the model server.

Three processes use this package: the **webhook** (``webhook/``) turns MinIO's bucket events
into durable intents, the **agent** (``agent/``) turns intents into published versions and
``config.json``, and the **gateway** (``gateway/``) serves and records predictions. This
package holds what they share (configuration, the schemas, name and object-key rules, atomic
file writes, the S3 client, the Flask helpers) and imports none of them. The webhook and the
agent talk only through intents that follow ``schemas/intent.schema.json`` (files, and the
webhook's intent log that frames the same documents); see
ARCHITECTURE.md.
"""

__version__ = "0.1.0"
