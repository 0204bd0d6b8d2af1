"""The inbound side: what a service's ASGI app receives, guarded as a sidecar would.

Public names live in :mod:`meshlite.asgi`; this package holds the implementation.
"""
