"""Where images come from: one module per data source, each registered here under its data.dataset name.

To add a source, write a module with a `SOURCE = DataSource(...)` (see registry.py and mnist_5k.py) and
register it, in the list below or with `register()` from your own code: config.py's name check, defaults
and required keys, and the download and preprocess stages all follow the registry.
"""

from ganops.data.sources.registry import DataSource, register, source_named, source_names, unregister
from ganops.data.sources import cifar10, fashion_mnist, folder, mnist, mnist_5k, url

__all__ = ["DataSource", "register", "unregister", "source_named", "source_names"]

for _module in (mnist_5k, mnist, fashion_mnist, cifar10, url, folder):  # the order error messages list them in
    register(_module.SOURCE)
