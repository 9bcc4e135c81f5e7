"""The CUDA code paths, on a GPU when there is one (skipped otherwise; CI has none).

Every test that uses CUDA, here and elsewhere, carries the ``cuda`` marker (registered in
pyproject.toml): ``benchmarks/gpu_check.sh`` runs them all with ``pytest -m cuda`` on a GPU
machine. These tests need pytest (fixtures, parametrize), so there is no plain-script mode.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import context, make_strategy, tiny_batch, tiny_net  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]
TINY = dict(max_train_samples=256, channels=4, layers=3, batch_size=32,
            max_steps_per_epoch=3, epochs=2, device="cuda")


def test_lean_gradient_equals_the_full_supernet_gradient_on_cuda():
    from nasp.supernet.weighting import CellWeighting, dense_plan

    net = tiny_net().cuda()
    s = make_strategy("nasp", seed=1, init_noise=0.2, device=torch.device("cuda"))
    ctx = context(net)
    batch = tuple(t.cuda() for t in tiny_batch())
    lean = s.arch_gradient(ctx, batch)
    bar = {k: v.clone().requires_grad_(True) for k, v in s.A_bar.items()}
    full = torch.autograd.grad(
        ctx.loss(batch, {k: CellWeighting(b, dense_plan(*b.shape)) for k, b in bar.items()}),
        list(bar.values()))
    for a, b in zip(lean, full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("strategy", ["nasp", "darts2"])
def test_a_search_on_cuda_runs_and_resumes(tmp_path, strategy):
    import nasp

    res = nasp.search(out=str(tmp_path / "run"), strategy=strategy, progress=False, **TINY)
    assert len(res.metrics) == 2 and res.result["peak_mem_mb"] > 0
    res.genotype.validate()
    again = nasp.resume(tmp_path / "run", progress=False)  # finished: only re-reports
    assert again.genotype == res.genotype


def test_training_a_genotype_on_cuda(tmp_path):
    import nasp

    result = nasp.train(genotype="DARTS_V2", out=str(tmp_path / "train"), progress=False,
                        max_train_samples=256, channels=8, layers=5, batch_size=32,
                        max_steps_per_epoch=3, epochs=1, device="cuda")
    assert 0.0 <= result["test_acc"] <= 1.0
    assert json.loads((tmp_path / "train" / "result.json").read_text())["epochs"] == 1

