"""The search loop end to end at tiny sizes: run folder, resume equivalence, CLI, errors."""

import json
import os

import pytest
import torch

import nasp
from helpers import tiny_cfg, use_synthetic_task
from nasp.cli import main
from nasp.configs import SearchConfig, resolve
from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.loops.search import run_search

TINY = dict(max_train_samples=256, channels=4, layers=3, batch_size=32, max_steps_per_epoch=2,
            epochs=2, preset="quick")
TINY_ARGS = ["--max-train-samples", "256", "--channels", "4", "--layers", "3",
             "--batch-size", "32", "--max-steps-per-epoch", "2", "--epochs", "2", "--quiet"]


@pytest.mark.parametrize("strategy", ["nasp", "darts"])
def test_resumed_search_ends_bit_identical(tmp_path, strategy):
    straight = nasp.search(out=str(tmp_path / "a"), strategy=strategy, progress=False, **TINY)

    class Kill(Exception):
        pass

    def kill_after_first(epoch, record):
        if epoch == 0:
            raise Kill

    run_b = tmp_path / "b"
    cfg = resolve(SearchConfig, dict(strategy=strategy, out=str(run_b), **TINY))
    with pytest.raises(Kill):
        run_search(cfg, run_b, progress=False, on_epoch_end=kill_after_first)
    resumed = nasp.resume(run_b, progress=False)

    a_arch = straight.strategy.state_dict()["arch"]["tensors"]
    b_arch = resumed.strategy.state_dict()["arch"]["tensors"]
    for cell in a_arch:
        assert torch.equal(a_arch[cell], b_arch[cell])
    assert straight.genotype == resumed.genotype
    ga = json.loads((tmp_path / "a" / "genotype.json").read_text())
    gb = json.loads((run_b / "genotype.json").read_text())
    assert ga == gb
    # the histories match too (times aside), one line per epoch, no duplicate after resume
    ma = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (run_b / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in mb] == [0, 1]
    for x, y in zip(ma, mb):
        assert x["train_loss"] == y["train_loss"] and x["valid_acc"] == y["valid_acc"]


def test_cli_search_writes_a_complete_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--out", str(out), "--seed", "3", *TINY_ARGS]) == 0
    for name in ("config.json", "metrics.jsonl", "arch.jsonl", "genotype.json", "result.json",
                 "checkpoint.pt"):
        assert (out / name).exists(), name
    geno = Genotype.from_json(out / "genotype.json")
    assert len(geno.normal) == 8 and geno.normal_concat == [2, 3, 4, 5]
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 3 and config["strategy"] == "nasp" and config["space"] == "nasp-7"
    arch = [json.loads(x) for x in (out / "arch.jsonl").read_text().splitlines()]
    assert [a["epoch"] for a in arch] == [-1, 0, 1]
    a_bar = torch.tensor(arch[-1]["cells"]["normal"]["weights"]["A_bar"])
    assert a_bar.shape == (14, 7) and set(a_bar.sum(1).tolist()) == {0.0, 1.0}
    # the exported genotype is exactly the last Ā
    ops = arch[-1]["cells"]["normal"]["ops"]
    edges = arch[-1]["cells"]["normal"]["edges"]
    kept = [(ops[int(row.argmax())], edges[e][1]) for e, row in enumerate(a_bar) if row.sum() > 0]
    assert [tuple(p) for p in geno.normal] == kept
    assert "genotype:" in capsys.readouterr().out
    # a second search into the same folder is refused with a hint
    assert main(["search", "--out", str(out), *TINY_ARGS]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--space", "nope"], "unknown search space 'nope'"),
        (["--strategy", "nope"], "unknown strategy 'nope'"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--data", "nope"], "unknown dataset 'nope'"),
        (["--space", "rnn"], "is for task 'lm'"),
        (["--lr", "1e12", "--log-every", "1"], "lower --lr"),
        (["--batch-size", "4096"], "--batch-size"),
    ],
)
def test_cli_errors_are_one_clear_line(tmp_path, capsys, args, needle):
    code = main(["search", "--out", str(tmp_path / "r"), *TINY_ARGS, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.startswith("error: ") and "Traceback" not in err


def test_unwritable_output_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions
        pytest.skip("running as root: permissions are not enforced")
    assert main(["search", "--out", str(locked / "r"), *TINY_ARGS]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_out_under_a_file_is_reported(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["search", "--out", str(blocker / "r"), *TINY_ARGS]) == 2
    assert "a file stands where a folder is needed" in capsys.readouterr().err


def test_wrong_image_shape_is_reported():
    from nasp.data.dataset import make_dataset
    from nasp.tasks.image import ImageSearchTask

    cfg = resolve(SearchConfig, dict(TINY))
    tiny = make_dataset("tiny", torch.zeros(64, 1, 4, 4, dtype=torch.uint8),
                        torch.zeros(64, dtype=torch.long), torch.zeros(8, 1, 4, 4,
                        dtype=torch.uint8), torch.zeros(8, dtype=torch.long), ["a"], hflip=False)
    with pytest.raises(NaspError, match="too small"):
        ImageSearchTask(cfg, tiny, torch.device("cpu"))


def test_a_run_config_json_can_be_passed_back_as_config(tmp_path):
    """Re-running a search from its recorded options is the natural way to repeat it."""
    cfg = resolve(SearchConfig, {**TINY, "seed": 5, "lambda_params": 0.25})
    assert cfg.cost == "params" and cfg.lambda_cost == 0.25  # the alias of the regularizer
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.record()))
    again = resolve(SearchConfig, {}, path)
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("strategy", ["nasp", "darts2", "asap", "pa"])
def test_no_architecture_step_moves_batchnorm_statistics(monkeypatch, strategy):
    """Inside the real loop: the running statistics before and after every architecture step
    are identical (the weight steps between them do move them)."""
    use_synthetic_task(monkeypatch)
    from nasp.strategies import get_strategy

    cls = get_strategy(strategy)
    original = cls.arch_step
    seen = []

    def watched(self, ctx, train_batch, val_batch):
        net = ctx.loss.__self__.model
        before = [b.clone() for b in net.buffers()]
        original(self, ctx, train_batch, val_batch)
        seen.append(all(torch.equal(a, b) for a, b in zip(before, net.buffers())))

    monkeypatch.setattr(cls, "arch_step", watched)
    res = run_search(tiny_cfg(strategy=strategy, epochs=1, arch_lr=0.1), progress=False)
    assert len(seen) == 4 and all(seen)
    assert res.metrics[-1]["train_loss"] > 0


def test_the_loop_leaves_weights_of_ops_that_did_not_run_untouched(monkeypatch):
    """Over real steps of the search loop with a fast-moving architecture: every optimizer
    step changes only the weights of ops the weight step ran, although selections change
    between steps (so stale gradients, momentum or weight decay would show)."""
    use_synthetic_task(monkeypatch)
    from nasp.strategies.nasp import NASP

    plans, changes, checks = [], [], []
    weighting = NASP.weighting

    def recording(self):
        w = weighting(self)
        plans.append({name: cw.plan for name, cw in w.items()})
        return w

    monkeypatch.setattr(NASP, "weighting", recording)
    step = torch.optim.SGD.step

    def checked_step(opt, *a, **kw):
        net = nets[0]
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        out = step(opt, *a, **kw)
        ran = plans[-1]
        after = dict(net.named_parameters())
        for ci, cell in enumerate(net.cells):
            for e, mixed in enumerate(cell.edges):
                for k, op in enumerate(mixed.ops):
                    names = [f"cells.{ci}.edges.{e}.ops.{k}.{n}" for n, _ in
                             op.named_parameters()]
                    if names:
                        moved = any(not torch.equal(after[n], before[n]) for n in names)
                        checks.append(moved == (ran[cell.cell_type][e][k] == 1))
        changes.append(plans[-1])
        return out

    nets = []
    import nasp.loops.search as search_loop

    build = search_loop.build_task

    def capture(cfg, device, dist=None):
        task = build(cfg, device, dist)
        nets.append(task.model)
        return task

    monkeypatch.setattr(search_loop, "build_task", capture)
    monkeypatch.setattr(torch.optim.SGD, "step", checked_step)
    run_search(tiny_cfg(strategy="nasp", epochs=2, arch_lr=0.3), progress=False)
    assert checks and all(checks)
    assert len({str(p) for p in changes}) > 1  # the selection did change between steps
