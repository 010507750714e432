"""Peer implementations as plugins: another library's algorithm run by rlarena's loop, on rlarena's rollouts,
evaluated by rlarena's evaluation (docs/peers.md). Importing this package registers them; the peer library
itself is imported only when a peer run is configured (the optional extra ``rlarena[peers]``)."""

from . import sb3  # noqa: F401
