import atexit
import os
import shutil
import tempfile

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# compiled-step tests write inductor's cache to a folder of their own, removed at the end: they
# neither read nor clobber the machine's cache (nasp.compiled says where that lives)
_INDUCTOR_CACHE = tempfile.mkdtemp(prefix="nasp-tests-inductor-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = _INDUCTOR_CACHE
atexit.register(shutil.rmtree, _INDUCTOR_CACHE, ignore_errors=True)
# one thread: tiny tensors gain nothing from two, and OpenMP threads spin badly on a busy machine
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
