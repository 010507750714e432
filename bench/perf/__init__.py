"""Speed benchmarks of the fused ops against what users would otherwise run (installed as rlarena.bench.perf).

* ``peers.py``: the peer implementations (written here, in the style of CleanRL, stable-baselines3 and
  TorchRL) and the memory floor.
* ``run.py``: one command that times everything side by side and prints a table of medians and ratios, and
  writes it as JSON: ``python -m rlarena.bench.perf.run --out perf.json`` (``rlarena bench``).
* ``test_*.py``: the same cases as pytest-benchmark tests; with ``--benchmark-disable`` (the default in
  the project's pytest config) they run each case once as a correctness smoke test.
"""
