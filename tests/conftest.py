"""Test-session settings.

Under pytest-xdist (``-n``), each worker is one process per core: one torch thread each, so that workers do not
oversubscribe the cores (the small real CPU forwards the oracles run are slower with threads competing)."""
import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
