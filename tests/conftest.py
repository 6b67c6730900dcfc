"""Suite-wide settings: one intra-op thread.

Small ops are much faster single-threaded on this 2-vCPU class of machine, and parity tests
compare runs in different processes, which only agree bitwise under the same thread count.
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
