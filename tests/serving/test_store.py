"""The store's swap rules, with in-memory resolvers and loaders (no registry)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pytest
from prometheus_client import generate_latest

from modelio import allowlist
from modelio import source as modelio_source
from modelio.identity import ModelIdentity
from modelio.source import Source
from serving.loader import LoadError
from serving.metrics import Metrics
from serving.scoring import LoadedModel
from serving.store import ModelStore
from tests.serving.helpers import loaded
from tests.utils import wait_for


class Registry:
    """An alias that tests move, and versions that load or fail on demand."""

    def __init__(self) -> None:
        self.version = "1"
        self.down = False
        self.broken: set[str] = set()
        self.loads: list[str] = []
        self.pending: dict[str, Callable[[], LoadedModel]] = {}
        """Versions loaded twin first: what is left to do, by version."""

    def resolve(self) -> Source:
        if self.down:
            raise ConnectionError("connection refused")
        return Source(identity=ModelIdentity(name="toy", version=self.version, run_id=None,
                                             uri=f"models:/toy/{self.version}"))

    def load(self, source: Source) -> LoadedModel:
        ref = source.identity
        assert ref.version is not None
        self.loads.append(ref.version)
        if ref.version in self.broken:
            raise LoadError("cannot load: model.skops is not a skops file")
        model = loaded(version=ref.version)
        pending = self.pending.get(ref.version)
        return dataclasses.replace(model, pending=pending) if pending else model


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


def test_the_first_version_serves_from_its_twin_while_the_rest_loads_behind(
        registry: Registry, store: ModelStore) -> None:
    release = threading.Event()
    final = loaded(version="1")

    def finish() -> LoadedModel:
        release.wait(5)
        return final

    registry.pending["1"] = finish
    assert store.refresh()
    first = store.current
    assert first is not None
    assert first.pending is not None, "served before finishing"
    assert store.status()["sklearn"] == "loading"
    release.set()
    wait_for(lambda: store.current is final, what="the final version", seconds=5,
             interval=0.01)
    assert store.status()["sklearn"] == "loaded"
    assert not store.refresh(), "finishing is not a new version"


def test_a_swap_finishes_the_new_version_before_serving_it(registry: Registry,
                                                           store: ModelStore) -> None:
    assert store.refresh()
    final = loaded(version="2")
    registry.version, registry.pending["2"] = "2", lambda: final
    assert store.refresh()
    assert store.current is final, "a version swapped in is whole: nothing pending"


def test_a_version_whose_pending_part_fails_is_dropped_and_then_loaded_whole(
        registry: Registry) -> None:
    store = ModelStore(resolve=registry.resolve, load=registry.load, poll_seconds=60,
                       retry_failed_seconds=0)
    calls: list[str] = []

    def refuse() -> LoadedModel:
        calls.append("finish")
        raise LoadError("cannot load: model.skops is not a skops file")

    registry.pending["1"] = refuse
    assert store.refresh()
    wait_for(lambda: store.current is None and store.last_error is not None,
             what="the failed load to be recorded", seconds=5, interval=0.01)
    assert store.last_error == "toy version 1: cannot load: model.skops is not a skops file"
    assert store.reload_failures == 1
    assert not store.refresh(), "a retry loads the whole version before serving it"
    assert store.current is None
    assert calls == ["finish", "finish"]


@pytest.mark.parametrize(("uri", "name", "version", "run_id"), [
    ("models:/price/7", "price", "7", None),
    ("runs:/abc123/model", "cand", None, "abc123"),
    ("s3://bucket/model", "cand", None, None),
])
def test_pinned_uri_names_what_it_can(uri: str, name: str, version: str | None,
                                      run_id: str | None) -> None:
    ref = modelio_source.pinned(uri, name="cand").identity
    assert (ref.name, ref.version, ref.run_id, ref.uri) == (name, version, run_id, uri)


def test_a_version_it_cannot_load_leaves_it_behind_the_registry_and_says_so(
        registry: Registry, store: ModelStore) -> None:
    """/ready stays 200 on the old version (load balancers act on it); /model and the
    metric `serving_behind_registry` tell that the registry moved on without it."""
    metrics = Metrics(store, endpoints=["/model"])
    store.refresh()
    assert (store.behind_registry, store.status()["behind_registry"]) == (False, False)
    assert b"serving_behind_registry 0.0" in generate_latest(metrics.registry)
    registry.version = "2"
    registry.broken.add("2")
    store.refresh()
    status = store.status()
    assert status["version"] == "1"
    assert status["registry_version"] == "2"
    assert status["behind_registry"] is True
    assert b"serving_behind_registry 1.0" in generate_latest(metrics.registry)
    registry.version = "1"  # the alias moved back: in step again
    store.refresh()
    assert store.status()["behind_registry"] is False


def test_model_status_publishes_what_the_server_can_load(store: ModelStore) -> None:
    loads = store.status()["loads"]
    assert loads["allowlist"] == allowlist.current().digest
    assert set(loads["kinds"]) == {"sklearn", "xgboost", "lightgbm"}
    assert loads["kinds"]["sklearn"]
