"""The top floor: the `rlarena` CLI, the training loop, results, leaderboards and benchmarks."""
