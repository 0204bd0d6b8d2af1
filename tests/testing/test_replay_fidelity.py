"""Record/replay fidelity: what a test team meets once a cassette is committed."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshlite.testing import CassetteError, CassetteMiss, FakeBackend, Recorder, replay

NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # plain-HTTP clients start much faster


def test_query_parameters_match_in_any_order(tmp_path: Path) -> None:
    cassette = tmp_path / "search.json"
    with FakeBackend(body=lambda request: {"query": request.query}) as b, \
            Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(httpx.HTTPTransport(verify=NO_TLS))) as client:
        client.get(f"{b.url}/search", params={"q": "ada", "page": "2", "tag": ["x", "y"]})
    with httpx.Client(transport=replay(cassette).transport()) as client:
        # The same params, built in another order: the request the code under test sends.
        reply = client.get(f"{b.url}/search", params={"tag": ["x", "y"], "page": "2", "q": "ada"})
    assert reply.json() == {"query": "q=ada&page=2&tag=x&tag=y"}


def test_values_of_a_repeated_parameter_keep_their_order(tmp_path: Path) -> None:
    cassette = tmp_path / "tags.json"
    with FakeBackend() as b, Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(httpx.HTTPTransport(verify=NO_TLS))) as client:
        client.get(f"{b.url}/items?tag=x&tag=y")
    with httpx.Client(transport=replay(cassette).transport()) as client, \
            pytest.raises(CassetteMiss, match=r"tag=y&tag=x is not in cassette"):
        client.get(f"{b.url}/items?tag=y&tag=x")


def test_a_cassette_of_another_format_says_so(tmp_path: Path) -> None:
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"meshlite_cassette": 2, "interactions": []}))
    with pytest.raises(CassetteError, match=r"format 2, and this meshlite reads format 1 only"):
        replay(newer)


class Users:
    """A client object whose method a test records with ``self`` among the arguments."""

    def fetch(self, uid: int) -> dict[str, int]:
        return {"id": uid}


def test_an_object_argument_matches_whatever_its_address(tmp_path: Path) -> None:
    cassette = tmp_path / "users.json"
    recording = Users()
    with Recorder(cassette) as rec:
        assert rec.wrap(Users.fetch)(recording, 1) == {"id": 1}
    replaying = Users()  # another object (another address), as in the next test run
    assert id(replaying) != id(recording)
    assert replay(cassette).wrap(Users.fetch)(replaying, 1) == {"id": 1}


SET_SCRIPT = """
import sys
from meshlite.testing import Recorder, replay

def tagged(tags):
    return len(tags)

tags = {"alpha", "beta", "gamma", "delta", "epsilon"}
if sys.argv[1] == "record":
    with Recorder(sys.argv[2]) as rec:
        rec.wrap(tagged, name="tagged")(tags)
else:
    print(replay(sys.argv[2]).wrap(tagged, name="tagged")(tags))
"""


def test_a_set_argument_matches_in_another_process(tmp_path: Path) -> None:
    # A set's order follows string hashing, which differs per process (PYTHONHASHSEED).
    script, cassette = tmp_path / "tagged.py", tmp_path / "tagged.json"
    script.write_text(SET_SCRIPT)

    def run(mode: str, hash_seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, str(script), mode, str(cassette)], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    run("record", "1")
    assert run("replay", "2") == "5"


def test_a_head_answer_keeps_its_content_length(tmp_path: Path) -> None:
    cassette = tmp_path / "head.json"
    with FakeBackend(body=b"x" * 1234) as b, Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(httpx.HTTPTransport(verify=NO_TLS))) as client:
        recorded = client.head(f"{b.url}/files/report.pdf")
    with httpx.Client(transport=replay(cassette).transport()) as client:
        replayed = client.head(f"{b.url}/files/report.pdf")
    # The size a client learns with HEAD, while recording and while replaying alike.
    assert recorded.headers["content-length"] == replayed.headers["content-length"] == "1234"
    assert replayed.content == b""


class UsersApi:
    """A client object called directly (``await api(uid)``), as some SDKs are."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def __call__(self, uid: int) -> dict[str, str]:
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"{self.base_url}/users/{uid}")
            return {"path": reply.json()["path"]}


async def test_an_object_with_an_async_call_is_recorded_and_replayed_async(
        tmp_path: Path) -> None:
    cassette = tmp_path / "api.json"
    async with FakeBackend() as b:
        with Recorder(cassette) as rec:
            assert await rec.wrap(UsersApi(b.url), name="users")(1) == {"path": "/users/1"}
    # the backend is gone: the answer comes from the cassette, awaited as the real one
    replayed = replay(cassette).wrap(UsersApi(b.url), name="users")
    assert await replayed(1) == {"path": "/users/1"}


def fetch(uid: int, full: bool = False, *, region: str = "eu") -> dict[str, Any]:
    return {"uid": uid, "full": full, "region": region}


def test_a_call_replays_however_its_arguments_are_passed(tmp_path: Path) -> None:
    cassette = tmp_path / "fetch.json"
    with Recorder(cassette) as rec:
        recorded = rec.wrap(fetch)
        recorded(uid=7)
        recorded(8)
        recorded(9, True, region="us")
    player = replay(cassette)
    replayed = player.wrap(fetch)
    # keyword as positional, positional as keyword, defaults spelt out or left out
    assert replayed(7) == {"uid": 7, "full": False, "region": "eu"}
    assert replayed(uid=8, full=False, region="eu") == {"uid": 8, "full": False, "region": "eu"}
    assert replayed(full=True, uid=9, region="us")["region"] == "us"
    player.assert_all_played()
    with pytest.raises(CassetteMiss, match=r"call .*fetch\(7, true\)"):
        replayed(7, True)  # another call: not bound to the recording of fetch(uid=7)


async def test_an_async_call_binds_and_call_by_name_binds_once_wrapped(tmp_path: Path) -> None:
    async def get(uid: int, *, fresh: bool = False) -> int:
        return uid * 10

    cassette = tmp_path / "get.json"
    async with Recorder(cassette) as rec:
        assert await rec.wrap(get, name="get")(uid=3) == 30
        assert await rec.wrap(get, name="get")(4, fresh=False) == 40
    player = replay(cassette)
    with pytest.raises(CassetteMiss):
        player.call("get", 3)  # no signature known yet: matched as recorded
    replayed = player.wrap(get, name="get")
    assert player.call("get", 3) == 30  # known now: bound alike
    assert await replayed(uid=4) == 40
    assert player.unplayed == []


def test_a_call_not_fitting_the_signature_is_matched_as_recorded(tmp_path: Path) -> None:
    cassette = tmp_path / "odd.json"
    with Recorder(cassette) as rec:
        rec.wrap(lambda *args, **kwargs: len(args), name="odd")(1, 2)
    player = replay(cassette)

    def odd(a: int) -> int:  # the signature changed since the recording
        raise AssertionError("replay called the real function")

    with pytest.raises(CassetteMiss, match=r"call odd\(1\)"):
        player.wrap(odd, name="odd")(1)
    assert player.call("odd", 1, 2) == 2  # the recording still answers its own form


def test_a_non_ascii_response_header_is_recorded_and_replayed(tmp_path: Path) -> None:
    # A server may send latin-1 or UTF-8 header values (a Content-Disposition file
    # name); httpx decodes them, and the recording must hand them back the same.
    cassette = tmp_path / "names.json"
    with FakeBackend(headers={"x-name": "caf\xe9"}) as b, Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(httpx.HTTPTransport(verify=NO_TLS))) as client:
        assert client.get(f"{b.url}/x").headers["x-name"] == "caf\xe9"  # while recording
    with httpx.Client(transport=replay(cassette).transport()) as client:
        assert client.get(f"{b.url}/x").headers["x-name"] == "caf\xe9"


def test_a_multipart_upload_replays_whatever_its_boundary(tmp_path: Path) -> None:
    cassette = tmp_path / "upload.json"
    files = {"file": ("a.txt", b"hello", "text/plain")}
    with FakeBackend(body=lambda request: {"size": len(request.body)}) as b, \
            Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(httpx.HTTPTransport(verify=NO_TLS))) as client:
        recorded = client.post(f"{b.url}/upload", files=files).json()
    with httpx.Client(transport=replay(cassette).transport()) as client:
        # httpx draws a new boundary for this request: the body's bytes differ.
        assert client.post(f"{b.url}/upload", files=files).json() == recorded
        with pytest.raises(CassetteMiss):  # another file's content still misses
            client.post(f"{b.url}/upload", files={"file": ("a.txt", b"world", "text/plain")})


def test_a_miss_tells_apart_bodies_of_one_size(tmp_path: Path) -> None:
    cassette = tmp_path / "orders.json"
    with FakeBackend() as b, Recorder(cassette) as rec, \
            httpx.Client(transport=rec.transport(httpx.HTTPTransport(verify=NO_TLS))) as client:
        client.post(f"{b.url}/orders", content=b'{"at": 1}')
    with httpx.Client(transport=replay(cassette).transport()) as client, \
            pytest.raises(CassetteMiss) as missed:
        client.post(f"{b.url}/orders", content=b'{"at": 2}')
    asked, available = missed.value.asked, missed.value.available[0]
    assert "(body 9 bytes, sha256 " in asked
    assert "(body 9 bytes, sha256 " in available
    assert asked != available


@pytest.mark.parametrize(("interactions", "problem"), [
    ("none", r"'interactions' must be a list, got str"),
    (None, r"'interactions' must be a list, got NoneType"),
    ([3], r"interaction 0 must be an object, got int"),
    ([{"kind": "http", "response": {"status": 200}}],
     r"interaction 0 \(http\) needs a 'request' with a string 'method' and 'url'"),
    ([{"kind": "call", "name": "f", "args": [], "kwargs": {}, "result": 1},
      {"kind": "call", "args": []}], r"interaction 1 \(a call\) has no string 'name'"),
    ([{"kind": "rpc"}], r"interaction 0 has kind 'rpc'; 'call' and 'http' are valid"),
])
def test_a_cassette_of_the_right_format_but_broken_says_where(
        tmp_path: Path, interactions: Any, problem: str) -> None:
    broken = tmp_path / "edited.json"
    broken.write_text(json.dumps({"meshlite_cassette": 1, "interactions": interactions}))
    with pytest.raises(CassetteError, match=rf"is not a valid meshlite cassette: {problem}"):
        replay(broken)
