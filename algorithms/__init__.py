"""Built-in algorithm plugins. Importing this package registers every algorithm module and package.

Adding an algorithm is adding a module here (or a package, when it has parts of its own, as
``preference/`` does), decorated with ``@register_algorithm``; its ``Config`` dataclass is its configuration
(docs/adding-an-algorithm.md). ``base`` (the Algorithm contract, shared helpers) and ``policies`` (the
default MLP actor-critic) are building blocks, not algorithms: they are imported by those that use them.
"""

import importlib
import pkgutil

BUILDING_BLOCKS = ("base", "policies")

for _module in pkgutil.iter_modules(__path__):  # a package (preference/) is listed like a module
    if not _module.name.startswith("_") and _module.name not in BUILDING_BLOCKS:
        importlib.import_module(f"{__name__}.{_module.name}")
