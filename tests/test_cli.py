"""The command line's own surface: every --help works, one spelling per flag, and what a
search prints about NAS-Bench-201's ground truth."""

from __future__ import annotations

import json
import re

import pytest

from nasp.cli import main

HELP = [["search"], ["train", "--task", "cnn"], ["train", "--task", "lm"], ["compare"],
        ["plot"], ["report"], ["draw"], ["info"], ["export"], ["profile"]]


def _help(capsys, argv: list[str]) -> str:
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nasp ")
    return re.sub(r"\s+", "", out)  # argparse wraps lines (also at hyphens)


@pytest.mark.parametrize("argv", HELP, ids=" ".join)
def test_help_works_for_every_subcommand_and_task(capsys, argv):
    _help(capsys, argv)


def test_help_names_the_nb201_inputs(capsys):
    train = _help(capsys, ["train"])
    assert "imagenet16-120" in train  # --data
    for argv in (["train"], ["draw"], ["info"]):  # --genotype / GENOTYPE
        assert "NAS-Bench-201cellstring" in _help(capsys, argv), argv


def test_train_takes_quiet_like_search_and_compare(capsys):
    for argv in (["search"], ["train"], ["compare"]):
        assert "--quiet" in _help(capsys, argv), argv
    assert "--no-progress" not in _help(capsys, ["train"])


def test_an_nb201_search_prints_the_ground_truth_and_what_it_is(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", "--space", "nb201", "--out", str(run), "--max-train-samples", "128",
                 "--channels", "4", "--layers", "3", "--batch-size", "16",
                 "--max-steps-per-epoch", "2", "--epochs", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    result = json.loads((run / "result.json").read_text())
    # per epoch (the progress lines) the held cell's truth, at the end the found cell's
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("'nb201_cifar10_test'" in e for e in epochs), out
    assert f"CIFAR-10 {result['nb201_cifar10_test']:.2f}%" in out
    assert "ImageNet16-120" in out and "whatever data this search ran on" in out
    assert "whatever data this search ran on" in result["nb201_note"]
    assert "NAS-Bench-201" not in _search_summary(tmp_path, capsys)


def _search_summary(tmp_path, capsys) -> str:
    """What a search outside NAS-Bench-201 prints at the end."""
    assert main(["search", "--out", str(tmp_path / "plain"), "--max-train-samples", "128",
                 "--channels", "4", "--layers", "3", "--batch-size", "16",
                 "--max-steps-per-epoch", "1", "--epochs", "1", "--quiet",
                 "--device", "cpu"]) == 0
    return capsys.readouterr().out
