"""Project-wide test settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The models under test are tiny: on a 2-core machine intra-op threading costs more than it
    # saves (measured: a model test went from ~10 s to 0.3 s). Learning tests that want both cores
    # set their own thread count.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
