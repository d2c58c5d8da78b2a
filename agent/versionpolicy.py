"""Which versions of a model to keep: the ones OVMS will serve under its ``model_version_policy``.

The policy comes from ``ovms.model_defaults`` / ``ovms.models.<name>`` (the same settings the
agent writes into ``config.json``), so the disk holds what OVMS serves and no more:

- ``{"latest": {"num_versions": N}}``: the N highest versions present in the bucket;
- ``{"specific": {"versions": [...]}}``: those of the listed versions the bucket has;
- ``{"all": {}}``, or no policy: every version (as before policies were honoured).

With no policy OVMS itself serves only the highest version; the agent still keeps them all, so
that an operator who never set a policy sees no version disappear after an upgrade.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from modelsync.config import OvmsConfig

V = TypeVar("V")


class VersionPolicy:
    def __init__(self, ovms: OvmsConfig) -> None:
        self.ovms = ovms

    def _policy(self, model: str) -> Mapping[str, Any]:
        policy = self.ovms.settings_for(model).get("model_version_policy")
        return policy if isinstance(policy, Mapping) else {}

    def restricts(self, model: str) -> bool:
        policy = self._policy(model)
        return "latest" in policy or "specific" in policy

    def wanted(self, model: str, present: Iterable[int]) -> set[int]:
        """The versions to keep, of those ``present`` in the bucket."""
        versions = set(present)
        policy = self._policy(model)
        if "latest" in policy:
            count = int(policy["latest"].get("num_versions", 1))
            return set(sorted(versions)[-count:]) if count > 0 else set()
        if "specific" in policy:
            return versions & {int(v) for v in policy["specific"].get("versions", [])}
        return versions

    def describe(self, model: str) -> str:
        policy = self._policy(model)
        if "latest" in policy:
            return f"latest {policy['latest'].get('num_versions', 1)}"
        if "specific" in policy:
            return f"specific {sorted(policy['specific'].get('versions', []))}"
        return "all"

    def keep(self, listings: Mapping[tuple[str, int], V]) -> dict[tuple[str, int], V]:
        """The listings of the versions the policy keeps (each model judged on its own versions)."""
        by_model: dict[str, set[int]] = {}
        for model, version in listings:
            by_model.setdefault(model, set()).add(version)
        wanted = {
            model: self.wanted(model, versions) if self.restricts(model) else versions
            for model, versions in by_model.items()
        }
        return {key: value for key, value in listings.items() if key[1] in wanted[key[0]]}
