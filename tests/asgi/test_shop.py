"""``meshlite demo --services``: the shop of examples/shop, four uvicorn processes
calling each other through their meshes, observed through a real OTLP receiver and
the services' own dashboards."""

from __future__ import annotations

import io
import time

from observability.otlp_receiver import OtlpReceiver, ReceivedSpan

from meshlite._demo_shop import SERVICES, run_shop_demo

BUDGET_MS = 10_000


def _service(span: ReceivedSpan) -> str:
    return str(span.resource["service.name"])


def test_one_trace_across_the_shop_with_deadlines_and_edges() -> None:
    out = io.StringIO()
    with OtlpReceiver() as receiver:
        # A budget a loaded machine's first checkouts (four processes warming up) meet
        # too: with the demo's 2 s, some were cut (504) and looked like lost charges.
        result = run_shop_demo(out, io.StringIO(), requests=12, fault_rate=0.3,
                               otlp_endpoint=receiver.url, deadline_ms=BUDGET_MS)
        end = time.monotonic() + 15  # the services flush their spans as they exit
        while time.monotonic() < end and {_service(s) for s in receiver.spans} != set(
                SERVICES):
            time.sleep(0.1)
        spans = list(receiver.spans)

    assert result.statuses[200] >= 10  # retries in orders hid most payment failures
    # One checkout is one trace through all four services.
    roots = [s for s in spans if _service(s) == "gateway" and s.kind == "SERVER"
             and s.name == "GET /checkout/{item}"]
    assert len(roots) == 12
    trace = [s for s in spans if s.trace_id == roots[-1].trace_id]
    assert {_service(s) for s in trace} == set(SERVICES)
    by_id = {s.span_id: s for s in trace}
    for server in (s for s in trace if s.kind == "SERVER" and s is not roots[-1]):
        client = by_id[server.parent_span_id]  # each server span's parent: a client span
        assert client.kind == "CLIENT"
        assert (_service(client), _service(server)) in {
            ("gateway", "orders"), ("orders", "inventory"), ("orders", "payments")}
        hop = server
        while hop.parent_span_id:  # and the chain climbs to the gateway's root span
            hop = by_id[hop.parent_span_id]
        assert hop is roots[-1]
    # The deadline set at the gateway reaches inventory reduced by the time spent.
    b = result.budgets
    assert 0 < b["inventory"] <= b["orders"] <= b["gateway"] <= BUDGET_MS
    assert b["inventory"] < BUDGET_MS
    # Each service's dashboard draws the edges it learned from x-meshlite-caller.
    callers = {(e["from"], e["to"]) for name in SERVICES
               for e in result.topology[name]["edges"] if e["to"] == name}
    assert callers == {("gateway", "orders"), ("orders", "inventory"),
                       ("orders", "payments")}
    payments = next(e for e in result.topology["payments"]["edges"] if e["from"] == "orders")
    assert payments["errors"] > 0  # the injected fault, seen by the callee
    assert "Deadline budget hop by hop" in out.getvalue()


def test_demo_services_without_the_shop_exits_2(tmp_path: object) -> None:
    import subprocess
    import sys

    command = "import sys; from meshlite.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", command, "demo", "--services", "--dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2
    # It said "pass --dir PATH" to one who had passed --dir.
    assert f"--dir {tmp_path} holds no shop.py" in done.stderr
