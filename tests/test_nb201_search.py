"""Every strategy searches the NAS-Bench-201 space and is scored by the benchmark's truth."""

import json

import pytest

import nasp
from nasp.cli import main
from nasp.nb201 import lookup

TINY = dict(space="nb201", preset="quick", max_train_samples=128, channels=4, layers=3,
            batch_size=16, max_steps_per_epoch=2, epochs=2, device="cpu")


def test_quick_preset_on_nb201_is_its_own():
    from nasp.configs import SearchConfig, resolve

    cfg = resolve(SearchConfig, {"space": "nb201"})
    assert cfg.preset == "nb201-quick" and cfg.layers % 3 == 0
    paper = resolve(SearchConfig, {"space": "nb201", "preset": "paper"})
    assert (paper.preset, paper.layers, paper.channels, paper.data) == \
        ("nb201", 15, 16, "cifar10")


@pytest.mark.parametrize("strategy", ["nasp", "darts", "darts2", "pa", "pa-lazy", "asap",
                                      "random"])
def test_each_strategy_ends_with_a_cell_of_the_benchmark(tmp_path, strategy):
    res = nasp.search(out=str(tmp_path / "run"), strategy=strategy, progress=False, **TINY)
    assert res.genotype.family == "nb201"
    truth = lookup(res.genotype)  # a cell of the table (raises otherwise)
    for m in res.metrics:  # the truth of the cell held, every epoch
        assert {"nb201_cifar10_test", "nb201_cifar100_test", "nb201_imagenet16_test"} <= set(m)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["nb201_cifar10_test"] == truth["cifar10_test"]


def test_compare_on_nb201_adds_the_ground_truth_columns(tmp_path, capsys):
    argv = ["compare", "--strategies", "nasp,random", "--seeds", "0,1", "--out",
            str(tmp_path), "--score-epochs", "1", "--quiet", "--in-process"]
    for k, v in TINY.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    assert main(argv) == 0
    table = (tmp_path / "comparison.md").read_text()
    assert "NB201 CIFAR-10 (%)" in table and "NB201 ImageNet16-120 (%)" in table
    assert "|___|" not in table and "the best cell of the benchmark" in table
    assert "94.37" in table  # the benchmark's best cell, for reference
    assert main(["plot", str(tmp_path), "--kind", "nb201", "-o", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "nb201-vs-epoch.png").exists()
