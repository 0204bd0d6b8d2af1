"""What a cassette holds of secrets: nothing but ``REDACTED``, in URLs, headers, error
messages and recorded arguments; and a call or request with another secret still
matches its recording."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import httpx
import pytest

from meshlite.testing import CassetteMiss, FakeBackend, Recorder, ReplayedError, replay

NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # plain-HTTP clients start much faster
SECRET = re.compile(r"[a-z]+_s3cret_\d+")


def plain() -> httpx.HTTPTransport:
    return httpx.HTTPTransport(verify=NO_TLS)


def secrets_in(text: str) -> list[str]:
    return sorted(set(SECRET.findall(text)))


def test_url_passwords_and_secret_parameters_and_headers_are_redacted(tmp_path: Path) -> None:
    # `user:password@`, ?api-key= / ?key= / ?access-token= / ?auth= and headers such
    # as X-Goog-Api-Key or PRIVATE-TOKEN went into the cassette in clear.
    cassette = tmp_path / "c.json"
    headers = {"X-Goog-Api-Key": "goog_s3cret_1", "PRIVATE-TOKEN": "gitlab_s3cret_2",
               "X-Vault-Token": "vault_s3cret_3", "X-Access-Token": "xat_s3cret_4"}
    query = "api-key=dash_s3cret_5&key=key_s3cret_6&access-token=at_s3cret_7&auth=a_s3cret_8"
    with FakeBackend(headers={"X-Upstream-Token": "resp_s3cret_9"}) as b, \
            Recorder(cassette) as rec, httpx.Client(transport=rec.transport(plain())) as client:
        host = b.url.split("//", 1)[1]
        client.get(f"{b.url}/c", headers=headers)
        client.get(f"{b.url}/b?{query}&page=2")
        client.get(f"http://ada:pw_s3cret_10@{host}/d")
    text = cassette.read_text()
    assert secrets_in(text) == []
    assert "page=2" in text
    assert f"http://ada:REDACTED@{host}/d" in text
    # replay redacts what it is asked the same way: other secrets still match
    with httpx.Client(transport=replay(cassette).transport(), verify=NO_TLS) as client:
        assert client.get(f"{b.url}/c", headers={"PRIVATE-TOKEN": "x"}).status_code == 200
        assert client.get(f"{b.url}/b?api-key=1&key=2&access-token=3&auth=4&page=2"
                          ).status_code == 200
        assert client.get(f"http://ada:other@{host}/d").status_code == 200


def test_secrets_in_recorded_calls_and_error_messages_are_redacted(tmp_path: Path) -> None:
    # A wrapped call's arguments (password=..., a URL with ?token=) and the message
    # of its error (httpx names the URL) went into the cassette, and into a miss.
    cassette = tmp_path / "c.json"

    def fetch(url: str, password: str) -> object:
        with httpx.Client(transport=plain()) as client:
            return client.get(url).raise_for_status().json()

    with FakeBackend(status=503) as b, Recorder(cassette) as rec, \
            pytest.raises(httpx.HTTPStatusError, match="tok_s3cret_1"):
        rec.wrap(fetch)(f"{b.url}/g?token=tok_s3cret_1", password="pw_s3cret_2")
    text = cassette.read_text()
    assert secrets_in(text) == []
    assert f"for url '{b.url}/g?token=REDACTED'" in text  # the message, redacted
    player = replay(cassette)
    with pytest.raises(ReplayedError, match=r"g\?token=REDACTED'"):  # other secrets match
        player.wrap(fetch)(f"{b.url}/g?token=other", password="other")
    with pytest.raises(CassetteMiss) as missed:
        player.wrap(fetch)(f"{b.url}/h?token=miss_s3cret_3", "pw_s3cret_4")
    assert secrets_in(str(missed.value)) == []


def test_a_secret_passed_by_position_matches_one_recorded_by_keyword(tmp_path: Path) -> None:
    cassette = tmp_path / "c.json"

    def login(user: str, password: str) -> dict[str, str]:
        return {"user": user}

    with Recorder(cassette) as rec:
        rec.wrap(login)("ada", "pw_s3cret_1")
    assert secrets_in(cassette.read_text()) == []
    assert replay(cassette).wrap(login)(user="ada", password="another") == {"user": "ada"}


def test_redaction_lists_are_replaced_not_extended(tmp_path: Path) -> None:
    # Names match by part: "session" redacts ?session_id=; a token not listed stays.
    cassette = tmp_path / "c.json"
    with FakeBackend() as b, Recorder(cassette, redact_params={"Session"}, redact_headers=[]
                                      ) as rec, \
            httpx.Client(transport=rec.transport(plain())) as client:
        client.get(f"{b.url}/a?session_id=s_s3cret_1&token=kept",
                   headers={"Authorization": "Bearer kept-too"})
    text = cassette.read_text()
    assert secrets_in(text) == []
    assert "token=kept" in text
    assert "Bearer kept-too" in text
