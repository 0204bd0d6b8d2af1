"""HTTP through the mesh: the wire and the clients that route every request.

Modules (each imported on first use: ``import meshlite`` loads none of them, and
this package imports nothing by itself, so the health check loads no HTTP library):

- ``_transport``: the ``httpx`` transports of ``mesh.http()`` and ``mesh.http_sync()``;
  ``_client``: their ``httpx`` clients; ``_send``: one routed attempt; ``_pools``: a
  pool per backend;
- ``_aio_wire`` / ``_sync_wire``: httpx transports over aiohttp / urllib3 (the
  latter's response body and error mapping in ``_sync_body``);
- ``_per_loop``: one value per event loop (the aiohttp wire's sessions, httpcore's
  transports in ``_loop_transport``), and how those of other loops are closed;
- ``_aio_session``: ``mesh.aiohttp()``, an ``aiohttp.ClientSession`` routed by a
  client middleware;
- ``_outgoing``: what every attempt adds to a request (``stamp``), the idempotency
  and failure rules;
- ``_dispatcher``: the protocol the clients call (a ``Mesh`` is one);
- ``_probe``: ``HttpHealthCheck``.
"""
