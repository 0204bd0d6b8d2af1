"""A mesh its user never closes: a ``ResourceWarning`` naming it, no traceback, no
hang, no lost spans (real interpreters, each running a script to its end)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from observability.otlp_receiver import OtlpReceiver

import meshlite as ml

PRELUDE = textwrap.dedent("""\
    import asyncio, sys
    import meshlite as ml
    from meshlite import telemetry
    from meshlite.testing import FakeBackend

    backend = FakeBackend().__enter__()
    telemetry.configure("frontend", otlp_endpoint=sys.argv[1])
    mesh = ml.Mesh([ml.Service("users", [backend.url], health_check=ml.HttpHealthCheck(
        path="/", interval=0.05))])
    """)

FORGOT_ASYNC = PRELUDE + textwrap.dedent("""\
    async def main():
        await mesh.__aenter__()                  # never closed
        assert (await mesh.http("users").get("/")).status_code == 200
        async with mesh.aiohttp("users").get("/") as r:
            assert r.status == 200
        print("leaving", flush=True)

    asyncio.run(main())
    print("state", mesh.state, flush=True)
    backend.__exit__(None, None, None)
    """)

FORGOT_SYNC = PRELUDE + textwrap.dedent("""\
    mesh.__enter__()                             # never closed
    assert mesh.http_sync("users").get("/").status_code == 200
    print("leaving", flush=True)
    backend.__exit__(None, None, None)
    """)

WARNING = "ResourceWarning: Mesh(['users'], state='open') was left open when "


def _run(script: str, receiver: OtlpReceiver) -> subprocess.CompletedProcess[str]:
    # The schedule delay keeps the spans queued: only a flush at the close or the
    # exit sends them.
    env_script = "import os; os.environ['OTEL_BSP_SCHEDULE_DELAY'] = '600000'\n" + script
    return subprocess.run([sys.executable, "-W", "default", "-c", env_script, receiver.url],
                          capture_output=True, text=True, timeout=90, check=False)


def test_an_event_loop_ending_with_the_mesh_open_closes_it_and_warns() -> None:
    with OtlpReceiver() as receiver:
        done = _run(FORGOT_ASYNC, receiver)
        spans = receiver.spans
    assert done.returncode == 0, done.stderr
    assert "state closed\n" in done.stdout
    # Left to asyncio.run's shutdown of async generators, the health checks' session
    # was torn down with "RuntimeError: athrow(): asynchronous generator is already
    # running" and its traceback, and the aiohttp sessions logged "Unclosed client
    # session"; nothing said which mesh, or what to do.
    assert "Traceback" not in done.stderr, done.stderr
    assert "Unclosed" not in done.stderr, done.stderr
    assert WARNING + "its event loop ended; meshlite closed it then. Close it with " \
        "`async with mesh:` or `await mesh.aclose()`" in done.stderr, done.stderr
    assert done.stderr.count("was left open") == 1, done.stderr  # not again at exit
    assert sum(s.kind == "CLIENT" for s in spans) == 2  # both calls' spans arrived


def test_the_interpreter_exiting_with_a_sync_mesh_open_warns_and_does_not_hang() -> None:
    with OtlpReceiver() as receiver:
        done = _run(FORGOT_SYNC, receiver)  # the health checks' thread holds no exit up
        spans = receiver.spans
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert WARNING + "the interpreter exited; its health checks and watchers ended " \
        "with the process. Close it with `with mesh:` or `mesh.close()`" in done.stderr, \
        done.stderr
    assert sum(s.kind == "CLIENT" for s in spans) == 1


async def test_a_closed_mesh_leaves_no_guard_and_says_nothing() -> None:
    before = asyncio.all_tasks()
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    for _ in range(2):  # reopened, a mesh keeps one guard
        async with mesh:
            guards = [t for t in asyncio.all_tasks() - before
                      if t.get_name().startswith("meshlite-unclosed-guard")]
            assert len(guards) == 1
        await asyncio.sleep(0)  # the guard's cancellation runs
        assert all(t.done() for t in guards)
    # (filterwarnings = error: a warning here would fail the test)


async def test_a_guard_ends_when_its_mesh_is_closed_from_another_thread() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    await mesh.start()
    (first,) = [t for t in asyncio.all_tasks() if t.get_name().startswith("meshlite-unclosed")]
    await asyncio.to_thread(mesh.close)  # left pending, the old guard would close the
    await asyncio.wait((first,), timeout=30)  # mesh opened again below at the loop's end
    assert first.done()
    async with mesh:
        assert mesh.state == "open"


NEVER_OPENED = textwrap.dedent("""\
    import asyncio
    import meshlite as ml
    from meshlite.testing import FakeBackend

    backend = FakeBackend().__enter__()
    mesh = ml.Mesh([ml.Service("users", [backend.url])])    # never opened: it serves

    async def main():
        for _ in range(2):
            assert (await mesh.http("users").get("/")).status_code == 200

    asyncio.run(main())
    asyncio.run(main())    # a second loop: the first one's connections end then
    print("done", flush=True)
    backend.__exit__(None, None, None)
    """)


def test_a_never_opened_mesh_leaves_no_unclosed_connector_at_exit() -> None:
    # The mesh.http() client of a mesh never opened needs no closing (docs/mesh.md):
    # the connections its last loop left were torn down at the interpreter's exit
    # with aiohttp's "Unclosed connector" and the connections' reprs on stderr.
    done = subprocess.run([sys.executable, "-W", "default", "-c", NEVER_OPENED],
                          capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert done.stderr == ""
