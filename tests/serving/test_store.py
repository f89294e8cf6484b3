"""The store's swap rules, with in-memory resolvers and loaders (no registry)."""

from __future__ import annotations

import pytest

from serving.loader import LoadError, pinned_ref
from serving.scoring import LoadedModel, ModelRef
from serving.store import ModelStore
from tests.serving.helpers import loaded


class Registry:
    """An alias that tests move, and versions that load or fail on demand."""

    def __init__(self) -> None:
        self.version = "1"
        self.down = False
        self.broken: set[str] = set()
        self.loads: list[str] = []

    def resolve(self) -> ModelRef:
        if self.down:
            raise ConnectionError("connection refused")
        return ModelRef(name="toy", version=self.version, run_id=None,
                        uri=f"models:/toy/{self.version}")

    def load(self, ref: ModelRef) -> LoadedModel:
        assert ref.version is not None
        self.loads.append(ref.version)
        if ref.version in self.broken:
            raise LoadError("cannot load: model.skops is not a skops file")
        return loaded(version=ref.version)


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def store(registry: Registry) -> ModelStore:
    return ModelStore(resolve=registry.resolve, load=registry.load, poll_seconds=60,
                      retry_failed_seconds=3600)


def test_loads_then_swaps_only_when_the_alias_moves(registry: Registry,
                                                    store: ModelStore) -> None:
    assert store.refresh()
    first = store.current
    assert not store.refresh()
    assert store.current is first
    assert registry.loads == ["1"]
    registry.version = "2"
    assert store.refresh()
    assert store.current is not None
    assert store.current.info.version == "2"
    assert store.reloads == 2


def test_broken_version_keeps_the_old_model_and_reports(registry: Registry,
                                                        store: ModelStore) -> None:
    store.refresh()
    registry.version, registry.broken = "2", {"2"}
    assert not store.refresh()
    assert store.current is not None
    assert store.current.info.version == "1"
    assert store.last_error == "toy version 2: cannot load: model.skops is not a skops file"
    assert store.status()["last_reload_error"] == store.last_error
    assert store.reload_failures == 1
    assert not store.refresh()
    assert registry.loads == ["1", "2"], "a failed version is not downloaded on every poll"
    registry.version = "3"
    assert store.refresh()
    assert store.last_error is None


def test_unreachable_registry_keeps_serving(registry: Registry, store: ModelStore) -> None:
    store.refresh()
    registry.down = True
    assert not store.refresh()
    assert store.current is not None
    assert store.current.info.version == "1"
    assert store.last_error is not None
    assert store.last_error.startswith("registry: ")
    assert store.registry_failures == 1


def test_background_thread_starts_and_stops(registry: Registry, store: ModelStore) -> None:
    store.start()
    store.start()
    try:
        for _ in range(200):
            if store.ready:
                break
            store._stop.wait(0.01)
    finally:
        store.stop()
    assert store.ready


@pytest.mark.parametrize(("uri", "name", "version", "run_id"), [
    ("models:/price/7", "price", "7", None),
    ("runs:/abc123/model", "cand", None, "abc123"),
    ("s3://bucket/model", "cand", None, None),
])
def test_pinned_uri_names_what_it_can(uri: str, name: str, version: str | None,
                                      run_id: str | None) -> None:
    ref = pinned_ref(uri, "cand")
    assert (ref.name, ref.version, ref.run_id, ref.uri) == (name, version, run_id, uri)
