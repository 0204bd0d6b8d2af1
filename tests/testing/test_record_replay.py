"""Recorder and replay: real exchanges recorded once, then served with nothing running."""

from __future__ import annotations

import gzip
import itertools
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.testing import (
    CassetteError,
    CassetteMiss,
    FakeBackend,
    ReceivedRequest,
    Recorder,
    ReplayedError,
    replay,
)

NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # plain-HTTP clients start much faster


def plain() -> httpx.HTTPTransport:
    return httpx.HTTPTransport(verify=NO_TLS)


def aplain() -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(verify=NO_TLS)


@pytest.fixture
def cassette(tmp_path: Path) -> Path:
    return tmp_path / "cassettes" / "users.json"


def counting_body() -> Any:
    counter = itertools.count(1)
    return lambda request: {"n": next(counter), "path": request.path}


def record_http(cassette: Path) -> str:
    """Record a few exchanges against a real backend, which is gone on return."""
    with FakeBackend(body=counting_body()) as b, Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(plain())) as client:
        client.get(f"{b.url}/users/1", headers={"Authorization": "Bearer s3cret"})
        client.post(f"{b.url}/users", json={"name": "ada"})
        client.get(f"{b.url}/users/1")
        return b.url


# -- HTTP ------------------------------------------------------------------------------------


def test_replay_serves_recorded_exchanges_without_the_backend(cassette: Path) -> None:
    url = record_http(cassette)
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client:
        first = client.get(f"{url}/users/1")
        created = client.post(f"{url}/users", json={"name": "ada"})
        again = client.get(f"{url}/users/1")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    # identical requests replay in recorded order
    assert [first.json()["n"], created.json()["n"], again.json()["n"]] == [1, 2, 3]


async def test_async_record_and_replay(cassette: Path) -> None:
    async with FakeBackend(status=201, body={"ok": True}) as b:
        rec = Recorder(cassette)
        async with rec, httpx.AsyncClient(transport=rec.transport(aplain())) as client:
            assert (await client.put(f"{b.url}/x", content=b"v")).status_code == 201
    player = replay(cassette)
    async with httpx.AsyncClient(transport=player.transport(), verify=NO_TLS) as client:
        r = await client.put(f"{b.url}/x", content=b"v")
    assert (r.status_code, r.json()) == (201, {"ok": True})
    player.assert_all_played()


def test_miss_names_the_request_and_lists_the_cassette(cassette: Path) -> None:
    url = record_http(cassette)
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client, \
            pytest.raises(CassetteMiss) as missed:
        client.get(f"{url}/users/2")
    message = str(missed.value)
    assert f"GET {url}/users/2 is not in cassette {cassette}" in message
    assert "nothing recorded matches it" in message
    assert f"GET {url}/users/1" in message
    assert f"POST {url}/users (body" in message
    assert missed.value.asked == f"GET {url}/users/2"
    assert len(missed.value.available) == 3
    assert isinstance(missed.value, ml.MeshliteError)


def test_used_up_recordings_miss_unless_repeat(cassette: Path) -> None:
    url = record_http(cassette)
    strict = replay(cassette).transport()
    with httpx.Client(transport=strict, verify=NO_TLS) as client:
        client.get(f"{url}/users/1")
        client.get(f"{url}/users/1")
        with pytest.raises(CassetteMiss, match=r"already replayed(.|\n)*\* GET"):
            client.get(f"{url}/users/1")
    with httpx.Client(transport=replay(cassette, repeat=True).transport(),
                      verify=NO_TLS) as client:
        ns = [client.get(f"{url}/users/1").json()["n"] for _ in range(3)]
    assert ns == [1, 3, 3]


def test_body_is_part_of_the_match_unless_disabled(cassette: Path) -> None:
    url = record_http(cassette)
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client, \
            pytest.raises(CassetteMiss):
        client.post(f"{url}/users", json={"name": "bob"})
    loose = replay(cassette, match_body=False).transport()
    with httpx.Client(transport=loose, verify=NO_TLS) as client:
        assert client.post(f"{url}/users", json={"name": "bob"}).json()["n"] == 2


def test_secrets_are_redacted(cassette: Path) -> None:
    url = record_http(cassette)
    with FakeBackend(headers={"Set-Cookie": "session=abc123"}) as b, Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(plain())) as client:
        client.get(f"{b.url}/a?token=t0ps3cret&page=2",
                   headers={"Authorization": "Bearer s3cret", "Cookie": "id=42"})
        url = b.url
    text = cassette.read_text()
    for secret in ("s3cret", "t0ps3cret", "id=42", "abc123"):
        assert secret not in text
    entry = json.loads(text)["interactions"][0]
    assert entry["request"]["headers"]["authorization"] == "REDACTED"
    assert entry["response"]["headers"]["set-cookie"] == "REDACTED"
    # a request with another token still matches: the URL is redacted the same way
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client:
        assert client.get(f"{url}/a?token=other&page=2").status_code == 200


def test_secret_query_parameters_are_redacted_whatever_their_case(cassette: Path) -> None:
    with FakeBackend() as b, Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(plain())) as client:
        client.get(f"{b.url}/a?API_KEY=k3y-s3cret&Token=t0k-s3cret&Password=pw-s3cret&page=2")
        url = b.url
    text = cassette.read_text()
    for secret in ("k3y-s3cret", "t0k-s3cret", "pw-s3cret"):
        assert secret not in text
    assert "page=2" in text
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client:
        assert client.get(f"{url}/a?API_KEY=x&Token=y&Password=z&page=2").status_code == 200


@pytest.mark.parametrize(
    ("options", "named"),
    [({"redact_headers": "x-secret"}, "redact_headers"),   # a str would be its characters
     ({"redact_params": "sig"}, "redact_params"),
     ({"redact_headers": [1]}, "redact_headers"),
     ({"redact_params": None}, "redact_params")],
)
def test_redaction_lists_of_the_wrong_kind_are_refused(
    cassette: Path, options: dict[str, Any], named: str,
) -> None:
    # A single name given as a string was taken as a set of one-letter names, so the
    # header it named went into the cassette in clear.
    with pytest.raises(ml.ConfigError, match=rf"^Recorder: {named} must be "):
        Recorder(cassette, **options)


@pytest.mark.parametrize(("options", "named"),
                         [({"repeat": "yes"}, "repeat"), ({"match_body": "false"}, "match_body"),
                          ({"match_body": None}, "match_body")])
def test_replay_flags_must_be_booleans(cassette: Path, options: dict[str, Any],
                                       named: str) -> None:
    # "false" is a true value: it would have matched bodies, the opposite of what it says.
    Recorder(cassette).save()
    with pytest.raises(ml.ConfigError, match=rf"^replay: {named} must be True or False"):
        replay(cassette, **options)


def test_transport_errors_are_recorded_and_replayed(cassette: Path) -> None:
    with FakeBackend(down=True) as b, Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(plain())) as client, \
            pytest.raises(httpx.ConnectError):
        client.get(b.url)
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client, \
            pytest.raises(httpx.ConnectError) as raised:
        client.get(b.url)
    assert str(raised.value.request.url).startswith(b.url)


def test_error_statuses_and_binary_bodies_round_trip(cassette: Path) -> None:
    with FakeBackend(status=503, retry_after=3, body=b"\x00\xffbin") as b, \
            Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(plain())) as client:
        live = client.get(b.url)
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client:
        replayed = client.get(b.url)
    assert (replayed.status_code, replayed.headers["retry-after"]) == (503, "3")
    assert replayed.content == live.content == b"\x00\xffbin"


def test_compressed_bodies_are_stored_decoded(cassette: Path) -> None:
    def gzipped(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=gzip.compress(b'{"big": 1}'),
                              headers={"content-encoding": "gzip"})

    with Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(httpx.MockTransport(gzipped))) as client:
        assert client.get("http://svc/").json() == {"big": 1}
    assert '{\\"big\\": 1}' in cassette.read_text()
    with httpx.Client(transport=replay(cassette).transport()) as client:
        assert client.get("http://svc/").json() == {"big": 1}


# -- callables -------------------------------------------------------------------------------


def lookup(uid: int, *, full: bool = False) -> dict[str, Any]:
    if uid < 0:
        raise ValueError(f"bad uid {uid}")
    return {"uid": uid, "full": full, "blob": b"\x01"}


async def alookup(uid: int) -> list[int]:
    return [uid, uid * 2]


def test_callable_record_and_replay(cassette: Path) -> None:
    with Recorder(cassette) as rec:
        recorded = rec.wrap(lookup)
        assert recorded(1, full=True)["uid"] == 1
        with pytest.raises(ValueError, match="bad uid"):
            recorded(-1)

    def must_not_run(uid: int, *, full: bool = False) -> dict[str, Any]:
        raise AssertionError("replay called the real function")

    replayed = replay(cassette).wrap(must_not_run, name=f"{__name__}.lookup")
    assert replayed(1, full=True) == {"uid": 1, "full": True, "blob": b"\x01"}
    with pytest.raises(ValueError, match="bad uid -1"):
        replayed(-1)
    with pytest.raises(CassetteMiss, match=r"call .*lookup\(2\)"):
        replayed(2)


async def test_async_callable_record_and_replay(cassette: Path) -> None:
    async with Recorder(cassette) as rec:
        assert await rec.wrap(alookup)(3) == [3, 6]
    player = replay(cassette)
    assert await player.wrap(alookup)(3) == [3, 6]
    assert player.unplayed == []


def test_unreplayable_results_and_unknown_errors_say_so(cassette: Path) -> None:
    class Opaque:
        pass

    class LocalError(Exception):
        pass

    def make() -> Opaque:
        return Opaque()

    def fail() -> None:
        raise LocalError("nope")

    with Recorder(cassette) as rec:
        rec.wrap(make, name="make")()
        with pytest.raises(LocalError):
            rec.wrap(fail, name="fail")()
    player = replay(cassette)
    with pytest.raises(CassetteError, match="not JSON-serialisable"):
        player.call("make")
    with pytest.raises(ReplayedError, match="LocalError: nope") as raised:
        player.call("fail")
    assert raised.value.error_type.endswith("LocalError")


def test_assert_all_played_lists_what_was_left(cassette: Path) -> None:
    with Recorder(cassette) as rec:
        rec.wrap(lookup)(1)
        rec.wrap(lookup)(2)
    player = replay(cassette)
    player.call(f"{__name__}.lookup", 1)
    with pytest.raises(AssertionError, match=r"(?s)1 interaction.*never replayed.*lookup\(2\)"):
        player.assert_all_played()


# -- files -----------------------------------------------------------------------------------


def test_saved_even_when_the_block_fails(cassette: Path) -> None:
    def failing_test() -> None:
        with Recorder(cassette) as rec:
            rec.wrap(lookup)(5)
            raise RuntimeError("test failed midway")

    with pytest.raises(RuntimeError, match="midway"):
        failing_test()
    data = json.loads(cassette.read_text())
    assert data["meshlite_cassette"] == 1
    assert len(data["interactions"]) == 1


def test_missing_or_foreign_cassettes_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match=r"record one first with meshlite\.testing\.Recorder"):
        replay(tmp_path / "absent.json")
    foreign = tmp_path / "other.json"
    foreign.write_text('{"interactions": []}')
    with pytest.raises(CassetteError, match="not a meshlite cassette"):
        replay(foreign)


def test_received_request_type_is_exported() -> None:
    assert ReceivedRequest("GET", "/").target == "/"
