"""Which model: the one identity every part passes around and writes down."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelIdentity:
    """A model as the registry names it, and the URI its files came from.

    `version` is None for a run's model (`runs:/<id>/model`), which no promotion
    recorded. What the serving API answers beside each prediction is `ref()`; what a
    batch output or a log records is `to_json()`.
    """

    name: str
    version: str | None
    run_id: str | None
    uri: str

    def ref(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id}

    def to_json(self) -> dict[str, str | None]:
        return {**self.ref(), "uri": self.uri}

    @property
    def label(self) -> str:
        return f"{self.name} version {self.version}" if self.version else self.uri
