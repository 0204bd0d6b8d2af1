"""Cassettes as a team meets them once committed: edited by hand, read by another user,
and recorded through a mesh's clients (httpx async and sync, aiohttp), then replayed
with the backends gone."""

from __future__ import annotations

import asyncio
import copy
import gzip
import itertools
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.testing import CassetteError, CassetteMiss, FakeBackend, Recorder, replay

RECORDED: dict[str, Any] = {
    "meshlite_cassette": 1,
    "redacted_params": ["token"],
    "interactions": [
        {"kind": "http",
         "request": {"method": "GET", "url": "http://127.0.0.1:8001/users/1",
                     "headers": {"accept": "*/*"}, "body": {"text": ""}},
         "response": {"status": 200, "headers": {"content-type": "application/json",
                                                 "set-cookie": ["a=1", "b=2"]},
                      "body": {"text": "{\"id\": 1}"}}},
        {"kind": "call", "name": "app.fetch", "args": [1], "kwargs": {},
         "result": {"$bytes": "AAEC"}},
    ],
}


def edited(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = copy.deepcopy(RECORDED)
    change(data)
    return data


def http(data: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = data["interactions"][0]
    return entry


def test_the_unedited_cassette_replays(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps(RECORDED))
    player = replay(path)
    with httpx.Client(transport=player.transport()) as client:
        response = client.get("http://127.0.0.1:8001/users/1")
    assert (response.json(), response.headers.get_list("set-cookie")) == (
        {"id": 1}, ["a=1", "b=2"])
    assert player.call("app.fetch", 1) == b"\x00\x01\x02"


# Each hand edit was met at replay as a KeyError, a base64 error, an AttributeError
# from deep in the transport (naming neither the file nor the field), or not at all
# (a status of True or 9999 served, a body with a mistyped key served empty).
@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: http(d)["response"].pop("body"),
     r"interaction 0 \(http\) has a 'response' without a 'body'"),
    (lambda d: http(d)["response"].update(body={"base64": "!!not base64"}),
     r"interaction 0 \(http\) has a response 'body' whose 'base64' is not base64"),
    (lambda d: http(d)["response"].update(body={"txt": "{}"}),
     r"interaction 0 \(http\) has a response 'body' that is not \{\"text\": a string\}"),
    (lambda d: http(d)["response"].update(body={"text": 5}),
     r"interaction 0 \(http\) has a response 'body' that is not"),
    (lambda d: http(d)["request"].update(body={"base64": "%%"}),
     r"interaction 0 \(http\) has a request 'body' whose 'base64' is not base64"),
    (lambda d: http(d)["response"]["headers"].update(retry=5),
     r"interaction 0 \(http\) needs the response's 'headers' as an object of strings"),
    (lambda d: http(d)["response"]["headers"].update(vary=["accept", 1]),
     r"interaction 0 \(http\) needs the response's 'headers' as an object of strings"),
    (lambda d: http(d)["request"]["headers"].update(accept=["a", "b"]),
     r"interaction 0 \(http\) needs the request's 'headers' as an object of strings"),
    (lambda d: http(d)["response"].update(status=True),
     r"interaction 0 \(http\) needs an 'error', or a 'response' with an integer 'status'"),
    (lambda d: http(d)["response"].update(status=2000),
     r"interaction 0 \(http\) needs an 'error', or a 'response' with an integer 'status' "
     r"from 100 to 999"),
    (lambda d: http(d)["response"].update(body_refused="10 MiB"),
     r"interaction 0 \(http\) has a 'body_refused' that is not a number of bytes"),
    (lambda d: http(d).update(error={"module": "builtins", "type": "ValueError",
                                     "message": 5}),
     r"interaction 0 has an 'error' without a string 'module' and 'type', or with a "
     r"'message' not a string"),
    (lambda d: d["interactions"][1].update(result={"$bytes": "not base64!"}),
     r"interaction 1 \(a call\) has in its 'result' a '\$bytes' that is not a base64 string"),
    (lambda d: d["interactions"][1].update(args=[{"$repr": 3}]),
     r"interaction 1 \(a call\) has in its 'args' a '\$repr' that is not a string"),
])
def test_a_hand_edit_is_named_by_file_interaction_and_field_at_load(
        tmp_path: Path, change: Callable[[dict[str, Any]], object], problem: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps(edited(change)))
    with pytest.raises(CassetteError) as caught:
        replay(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is not a valid meshlite cassette: ")
    assert caught.match(problem)


def test_a_format_of_true_is_not_format_1(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps(edited(lambda d: d.update(meshlite_cassette=True))))
    with pytest.raises(CassetteError, match=r"a meshlite cassette of format True, and this "
                                            r"meshlite reads format 1 only"):
        replay(path)


@pytest.mark.parametrize("text", [
    '{"meshlite_cassette": 1, "interactions": [ }',
    "meshlite_cassette: 1\ninteractions: []\n",  # YAML, as some recorders write
    "",
])
def test_a_file_that_is_not_json_says_so_with_the_place(tmp_path: Path, text: str) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(CassetteError, match=rf"cassette {path} is not JSON \(Expecting value: "
                                            r"line \d+ column \d+\)"):
        replay(path)


# -- the file on disk --------------------------------------------------------------------


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_new_cassette_gets_the_permissions_of_any_new_file(
        tmp_path: Path, umask: Callable[[int], None]) -> None:
    # It was written readable by its owner only (tempfile.mkstemp's 0600), so a cassette
    # recorded in a container or by a CI step was unreadable to the user running tests.
    umask(0o022)
    saved = Recorder(tmp_path / "cassettes" / "users.json").save()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644
    replay(saved)
    umask(0o027)
    other = Recorder(tmp_path / "cassettes" / "orders.json").save()
    assert stat.S_IMODE(other.stat().st_mode) == 0o640
    assert [p.name for p in other.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_cassette_recorded_again_keeps_its_permissions(
        tmp_path: Path, umask: Callable[[int], None]) -> None:
    umask(0o022)
    path = Recorder(tmp_path / "users.json").save()
    path.chmod(0o664)                              # shared with the team's group
    Recorder(path).save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o664


# -- recorded through a mesh's clients, replayed with nothing running --------------------

BIG = bytes(itertools.islice(itertools.cycle(range(256)), 3 * 1024 * 1024))
BODIES: dict[str, bytes] = {"/bin": bytes(range(256)), "/empty": b"", "/big": BIG,
                            "/text": "grüße".encode()}
MESH = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"], pipeline=ml.Pipeline())])


async def over_httpx(path: str) -> list[Any]:
    response = await MESH.http("users").get(path)
    return [response.status_code, response.content]


async def over_aiohttp(path: str) -> list[Any]:
    async with MESH.aiohttp("users").get(path) as response:
        return [response.status, await response.read()]


def over_httpx_sync(path: str) -> list[Any]:
    with MESH.http_sync("users") as client:
        response = client.get(path)
        return [response.status_code, response.content]


COUNTER = itertools.count(1)


def answer(request: Any) -> bytes:
    if request.path == "/count":
        return str(next(COUNTER)).encode()
    return BODIES[request.path]


async def test_bodies_recorded_through_the_mesh_clients_replay_with_the_backend_gone(
        tmp_path: Path) -> None:
    cassette = tmp_path / "mesh.json"
    paths = [*BODIES, "/count", "/count"]
    recorded: list[Any] = []
    async with FakeBackend(body=answer) as users, \
            FakeBackend(body=gzip.compress(b"zipped" * 1000),
                        headers={"content-encoding": "gzip"}) as zipped, MESH:
        with Recorder(cassette) as rec:
            for backend, asked in ((users, paths), (zipped, ["/gz"])):
                with MESH.override("users", backend):
                    for path in asked:
                        recorded.append(await rec.wrap(over_httpx)(path))
                        recorded.append(await rec.wrap(over_aiohttp)(path))
            with MESH.override("users", users):
                sync = rec.wrap(over_httpx_sync)        # off the loop serving users
                recorded.append(await asyncio.to_thread(sync, "/bin"))
    assert recorded[-3][1] == b"zipped" * 1000      # decoded by both clients
    counts = [int(r[1]) for r in recorded[8:12]]
    assert counts == list(range(counts[0], counts[0] + 4))  # four answers, in order

    player = replay(cassette)                       # users and zipped are stopped
    replayed = []
    for path in [*paths, "/gz"]:
        replayed.append(await player.wrap(over_httpx)(path))
        replayed.append(await player.wrap(over_aiohttp)(path))
    replayed.append(player.wrap(over_httpx_sync)("/bin"))
    assert replayed == recorded                    # repeated calls answered in order
    player.assert_all_played()
    with pytest.raises(CassetteMiss, match=rf"over_httpx_sync\(\"/big\"\) is not in "
                                           rf"cassette {cassette}: nothing recorded"):
        player.wrap(over_httpx_sync)("/big")


# -- what the client sees: the same while recording and while replaying ------------------


async def test_replayed_headers_are_those_the_recording_client_saw(tmp_path: Path) -> None:
    # The recording client gets no Content-Length (the body is handed on decoded, as it
    # streams); replay added one, so code reading it passed at replay what failed live.
    cassette = tmp_path / "users.json"
    async with FakeBackend(body=b"x" * 100, headers={"content-type": "text/plain"}) as b:
        rec = Recorder(cassette)
        async with rec, httpx.AsyncClient(transport=rec.transport()) as client:
            live = await client.get(f"{b.url}/a")
        with httpx.Client(transport=rec.transport()) as client:  # (a second exchange)
            await asyncio.to_thread(client.get, f"{b.url}/b")
        rec.save()
    player = replay(cassette)
    async with httpx.AsyncClient(transport=player.transport()) as client:
        replayed = await client.get(f"{b.url}/a")
    with httpx.Client(transport=player.transport()) as client:
        replayed_sync = client.get(f"{b.url}/b")
    assert "content-length" not in live.headers
    assert replayed.headers.multi_items() == live.headers.multi_items()
    assert replayed_sync.headers.multi_items() == live.headers.multi_items()
    assert replayed.content == replayed_sync.content == live.content == b"x" * 100
