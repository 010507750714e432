"""Built-in algorithm plugins. Importing this package registers every module's algorithms.

Adding an algorithm is adding a module here, decorated with ``@register_algorithm``; its ``Config``
dataclass is its configuration (docs/adding-an-algorithm.md).
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
