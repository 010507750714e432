"""A minimal third-party rlarena plugin: advantage policy gradient with a value baseline."""
