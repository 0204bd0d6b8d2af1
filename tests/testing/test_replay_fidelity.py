"""Record/replay fidelity: what a test team meets once a cassette is committed."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

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
