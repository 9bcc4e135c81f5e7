import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# one thread: tiny tensors gain nothing from two, and OpenMP threads spin badly on a busy machine
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
