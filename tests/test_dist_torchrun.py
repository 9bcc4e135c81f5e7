"""`nasp search` and `nasp train` under the real torchrun: two machines (c10d) against one.

The other distributed tests fork ranks with torchrun's environment made by hand; this one runs
the launcher users run. Two torchrun "nodes" with one process each, rendezvousing over c10d on
localhost, give every process LOCAL_RANK 0: a rank identity, data shard or writer chosen by the
local rank instead of the global one would make the two runs below differ (or make both nodes
write the run folder, which its lock refuses). The search runs without a DDP wrapper, the
training with one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest
import torch
import torch.distributed as dist

if not dist.is_available():
    pytest.skip("needs torch.distributed", allow_module_level=True)

TINY = ["--max-train-samples", "256", "--channels", "4", "--layers", "3", "--batch-size", "16",
        "--max-steps-per-epoch", "3", "--epochs", "2", "--quiet", "--device", "cpu"]
COMMANDS = {"search": ["search", *TINY], "train": ["train", "--genotype", "DARTS_V1", *TINY]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _torchrun(launch: list[str], command: str, out: str, cwd) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *launch, "-m",
                             "nasp", *COMMANDS[command], "--out", out], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    try:
        text, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        text, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish:\n{text[-3000:]}")
    assert proc.returncode == 0, text[-3000:]
    return text


@pytest.mark.parametrize("command", ["search", "train"])
def test_two_nodes_of_one_process_equal_one_node_of_two(tmp_path, command):
    one_node = tmp_path / "one-node"
    _finish(_torchrun(["--standalone", "--nproc-per-node", "2"], command, str(one_node),
                      tmp_path))

    two_nodes = tmp_path / "two-nodes"
    rdzv = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"localhost:{_free_port()}", "--rdzv-id", uuid.uuid4().hex[:8]]
    procs = [_torchrun(rdzv, command, str(two_nodes), tmp_path) for _ in range(2)]
    shown = [_finish(p) for p in procs]

    # one process in all prints the result, whichever node got rank 0
    said = "run folder:" if command == "search" else "result.json"
    assert sum(said in s for s in shown) == 1
    if command == "search":
        for name in ("arch.jsonl", "genotype.json"):
            assert (two_nodes / name).read_bytes() == (one_node / name).read_bytes(), name
    else:
        a, b = (torch.load(d / "checkpoint.pt", weights_only=True)["model"]
                for d in (one_node, two_nodes))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    epochs = [line for line in (two_nodes / "metrics.jsonl").read_text().splitlines() if line]
    assert len(epochs) == 2  # one writer: epochs 0 and 1, not each twice


def test_a_compare_plan_line_runs_under_torchrun_and_is_tabulated(tmp_path, capsys):
    """`nasp compare --plan --launch 'torchrun ...'`: each line (search, then its scoring run)
    is a torchrun command a scheduler can run as it is; the same compare then tabulates it."""
    from nasp.cli import main

    plan, out = tmp_path / "plan.txt", tmp_path / "cmp"
    launch = f"{sys.executable} -m torch.distributed.run --standalone --nproc-per-node 2 -m nasp"
    argv = ["compare", "--strategies", "nasp", "--seeds", "0", "--out", str(out), "--data",
            "fashion-mnist-sample", "--plan", str(plan), "--launch", launch,
            "--max-train-samples", "128", "--epochs", "1", "--channels", "4", "--layers", "3",
            "--batch-size", "16", "--score-epochs", "1", "--quiet", "--device", "cpu"]
    assert main(argv) == 0
    line, = plan.read_text().splitlines()
    assert line.count("torch.distributed.run") == 2  # the search and its scoring run
    done = subprocess.run(["bash", "-c", line], env=dict(os.environ, OMP_NUM_THREADS="1"),
                          cwd="/", capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for run in (out / "nasp-s0", out / "nasp-s0" / "score"):  # both ran on two ranks
        assert torch.load(run / "checkpoint.pt", weights_only=False)["world_size"] == 2
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 of 1 runs finished" in printed and "| nasp | 1 |" in printed
