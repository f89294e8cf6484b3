"""The deployed server and the registry agree: what promote and the gate read from /model."""

from __future__ import annotations

from typing import Any

import pytest
import xgboost

from modelio import allowlist
from pipeline.errors import RegistryError
from pipeline.gitops import deployed


def status(**kinds: str | None) -> dict[str, Any]:
    return {"version": "1", "loads": {"kinds": {"sklearn": "1.9.1", **kinds},
                                       "allowlist": allowlist.current().digest}}


def test_a_server_without_the_kind_cannot_load_it() -> None:
    reason = deployed.cannot_load(status(xgboost=None, lightgbm="4.7.0"), ["xgboost"])
    assert reason is not None
    assert "cannot load a xgboost model: it has no xgboost" in reason
    assert deployed.cannot_load(status(xgboost="3.2.0"), ["xgboost"]) is None
    assert deployed.cannot_load(status(), []) is None


def test_a_server_that_publishes_nothing_loads_scikit_learn_only() -> None:
    assert deployed.cannot_load({"version": "1"}, []) is None
    assert deployed.cannot_load({"version": "1"}, ["lightgbm"]) is not None


def test_another_allowlist_is_a_note() -> None:
    other = {"loads": {"kinds": {"sklearn": "1"}, "allowlist": "f" * 64}}
    note = deployed.allowlist_note(other)
    assert note is not None
    assert "another loading allowlist" in note
    assert deployed.allowlist_note(status()) is None


class Server:
    """A /model that answers a script of statuses, one per poll."""

    def __init__(self, statuses: list[dict[str, Any]]) -> None:
        self.statuses = statuses
        self.now = 0.0

    def status(self, _url: str, **_kwargs: Any) -> dict[str, Any]:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Server:
    fake = Server([])
    monkeypatch.setattr(deployed, "server_status", fake.status)
    return fake


def test_waiting_ends_when_the_server_serves_the_version(server: Server) -> None:
    server.statuses = [{"version": "1", "registry_version": "2"},
                       {"version": "1", "registry_version": "2"}, {"version": "2"}]
    served = deployed.await_served("http://s", "2", clock=server.clock, sleep=server.sleep)
    assert served.ok
    assert server.now == 2.0


def test_waiting_ends_with_the_servers_reason_when_it_refuses(server: Server) -> None:
    server.statuses = [{"version": "1", "registry_version": "2", "last_refusal": {
        "version": "2", "reason": "refused: types not on the loading allowlist: posix.system"}}]
    served = deployed.await_served("http://s", "2", clock=server.clock, sleep=server.sleep)
    assert not served.ok
    assert served.reason is not None
    assert "posix.system" in served.reason


def test_waiting_ends_with_the_load_error_of_that_version(server: Server) -> None:
    server.statuses = [{"version": "1", "registry_version": "2",
                        "last_reload_error": "m version 2: cannot load: ImportError: x"}]
    served = deployed.await_served("http://s", "2", clock=server.clock, sleep=server.sleep)
    assert served.reason == "m version 2: cannot load: ImportError: x"


def test_a_server_that_never_serves_it_times_out_without_a_refusal(server: Server) -> None:
    server.statuses = [{"version": "1", "registry_version": "2"}]
    with pytest.raises(RegistryError, match="did not serve version 2 within 10 s"):
        deployed.await_served("http://s", "2", timeout=10, clock=server.clock,
                              sleep=server.sleep)


def test_the_gate_warns_and_promote_refuses_a_kind_the_server_lacks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployed, "server_status",
                        lambda _url, **_kw: status(xgboost=None, lightgbm="4.7.0"))
    candidate = xgboost.XGBRegressor(n_estimators=2).fit([[0.0], [1.0]], [0.0, 1.0])
    warning = deployed.warning("http://s", candidate)
    assert warning is not None
    assert "cannot load a xgboost model" in warning
    with pytest.raises(RegistryError, match="promote refuses version 3: the deployed server "
                       "cannot load a xgboost model"):
        deployed.refuse_unloadable("http://s", candidate, version="3")
    assert deployed.warning(None, candidate) is None
    deployed.refuse_unloadable(None, candidate)  # no server configured: nothing to ask


def test_an_unreachable_server_is_a_warning_for_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(url: str, **_kw: Any) -> dict[str, Any]:
        raise RegistryError(f"the serving API at {url} did not answer /model (ConnectionError)")

    monkeypatch.setattr(deployed, "server_status", down)
    warning = deployed.warning("http://s", object())
    assert warning is not None
    assert warning.startswith("could not ask the deployed server what it loads")
