"""Bad input, every subcommand: exit status 2, exactly one ``error:`` line, no traceback, nothing
printed on stdout and the file tree exactly as it was (not even an empty folder).

The table is one row per case: ``(argv, setup, expected)``. ``argv`` is the command line as a
shell would split it, with ``{tmp}`` standing for the case's own folder (also the working folder,
where default outputs such as ``runs/`` or ``plots/`` would land); ``setup`` is ``None``, the name
of one of ``SETUPS`` (a finished search or training run, a cost table, a plain file, an empty
folder...) or a ``{path: text}`` dict of files to write first; ``expected`` is a piece of the one
error line, or ``None``. Adding an option means adding its bad values here.

The cases run in this process through ``nasp.cli.main`` (about a hundredth of the time of one
interpreter each); ``test_the_real_command_answers_as_the_harness_does`` runs a few of them as
``python -m nasp`` to show that the two agree.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import torch

import nasp
from nasp.cli import main

SRC = str(Path(nasp.__file__).resolve().parents[1])
TINY = ("--max-train-samples 128 --channels 4 --layers 3 --batch-size 16 --max-steps-per-epoch 2 "
        "--quiet --device cpu")
HUGE = "999999999999999999999999999"  # overflows every C integer type
NULL_CHANNELS = {"cfg.json": json.dumps({"channels": None})}
# a file of user models with choices (and the mistakes one can make in it)
OWN = {"m.py": """
import nasp
from torch import nn

def net(in_channels, num_classes):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1),
                         nasp.Choice({"a": nn.Identity(), "b": nn.ReLU()}),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

def three(in_channels, num_classes):
    return 3

def plain(in_channels, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, num_classes))

def shapes(in_channels, num_classes):
    return nn.Sequential(nasp.Choice({"k1": nn.Conv2d(in_channels, 4, 1),
                                      "k3": nn.Conv2d(in_channels, 4, 3)}),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
""", "bad.py": "raise RuntimeError('broken at import')\n"}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """What the setups copy from: runs made once per module (a few seconds in all)."""
    root = tmp_path_factory.mktemp("made")
    assert main(["search", "--out", str(root / "search"), "--epochs", "1", *TINY.split()]) == 0
    assert main(["train", "--genotype", "DARTS_V1", "--out", str(root / "train"), "--epochs", "1",
                 *TINY.split()]) == 0
    assert main(["profile", "--layers", "3", "--channels", "4", "--warmup", "0", "--repeats", "1",
                 "-o", str(root / "costs.json")]) == 0
    return root


def _copy(name: str) -> Callable[[Path, Path], None]:
    def setup(made: Path, tmp: Path) -> None:
        src = made / name
        shutil.copytree(src, tmp / name) if src.is_dir() else shutil.copy(src, tmp / name)
    return setup


def _truncated_checkpoint(made: Path, tmp: Path) -> None:
    """A search killed while its first checkpoint was being written, on a filesystem that does
    not keep renames atomic: an empty checkpoint.pt, and its .lock as the dead process left it."""
    shutil.copytree(made / "search", tmp / "search")
    (tmp / "search" / "checkpoint.pt").write_bytes(b"")
    (tmp / "search" / "result.json").unlink()
    (tmp / "search" / ".lock").write_text("4242 (nasp search --out search)")


SETUPS: dict[str, Callable[[Path, Path], None]] = {
    "search": _copy("search"),
    "train": _copy("train"),
    "costs": _copy("costs.json"),
    "file": lambda made, tmp: (tmp / "file.txt").write_text("not JSON\n"),
    "dir": lambda made, tmp: (tmp / "dir").mkdir(),
    "dir.onnx": lambda made, tmp: (tmp / "dir.onnx").mkdir(),
    "empty checkpoint": _truncated_checkpoint,
}

# (argv, setup, expected piece of the error line)
CASES: list[tuple[str, Any, str | None]] = [
    # --- nasp itself ------------------------------------------------------------------------
    ("bogus", None, "invalid choice"),
    ("--bogus", None, "unrecognized arguments"),
    # --- search: seeds and numbers -----------------------------------------------------------
    (f"search --seed {HUGE}", None, "--seed between 0 and 4294967295"),
    ("search --seed 4294967296", None, "--seed between 0 and 4294967295"),
    ("search --seed -1", None, "--seed between 0 and 4294967295"),
    ("search --seed 1.5", None, "invalid int value"),
    ("search --epochs 0", None, "--epochs 1 or more"),
    ("search --epochs -3", None, "--epochs 1 or more"),
    ("search --epochs two", None, "invalid int value"),
    ("search --batch-size 0", None, "--batch-size 1 or more"),
    ("search --batch-size 32.5", None, "invalid int value"),
    ("search --lr 0", None, "positive --lr"),
    ("search --lr -1", None, "positive --lr"),
    ("search --lr nan", None, "must be finite"),
    ("search --lr inf", None, "must be finite"),
    ("search --lr-min -1", None, "--lr-min 0 or more"),
    ("search --momentum 1", None, "--momentum in [0, 1)"),
    ("search --weight-decay -1", None, "--weight-decay 0 or more"),
    ("search --grad-clip -1", None, "--grad-clip 0 (off) or more"),
    ("search --arch-lr -1", None, "--arch-lr 0 or more"),
    ("search --arch-betas 1,0.5", None, "two values in [0, 1)"),
    ("search --arch-betas a,b", None, "comma-separated numbers"),
    ("search --arch-betas 0.5", None, "invalid arch_betas"),
    ("search --arch-weight-decay -1", None, "--arch-weight-decay 0 or more"),
    ("search --train-portion 0", None, "strictly between 0 and 1"),
    ("search --train-portion 1.5", None, "strictly between 0 and 1"),
    ("search --max-train-samples 0", None, "invalid max_train_samples: 0"),
    ("search --max-steps-per-epoch 0", None, "invalid max_steps_per_epoch: 0"),
    ("search --lambda-cost -1", None, "--lambda-cost 0 or more"),
    ("search --lambda-params -1", None, "--lambda-cost 0 or more"),
    ("search --lambda-params 1 --lambda-cost 2", None, "contradict each other"),
    ("search --channels 3", None, "even --channels"),
    ("search --channels 0", None, "even --channels"),
    ("search --layers 2", None, "--layers 3 or more"),
    ("search --stem-multiplier 0", None, "--stem-multiplier 1 or more"),
    ("search --cutout -1", None, "--cutout 0 (off) or more"),
    ("search --crop-padding -1", None, "--crop-padding 0 (off) or more"),
    ("search --log-every 0", None, "--log-every 1 or more"),
    ("search --eval-batch-size 0", None, "--eval-batch-size 1 or more"),
    ("search --dist-timeout 0", None, "positive --dist-timeout"),
    ("search --dist-timeout -5", None, "positive --dist-timeout"),
    ("search --threads 0", None, "--threads 1 or more"),
    ("search --threads -2", None, "--threads 1 or more"),
    ("search --threads two", None, "invalid int value"),
    # --- search: names ------------------------------------------------------------------------
    ("search --strategy nope", None, "unknown strategy 'nope'"),
    ("search --space nope", None, "unknown search space 'nope'"),
    ("search --data nope", None, "nope"),
    ("search --preset nope", None, "unknown preset 'nope'"),
    ("search --task xyz", None, "xyz"),
    ("search --task lm --space nasp-7", None, "is for task 'cnn'"),
    ("search --cost nope", None, "--cost params, madds, latency"),
    ("search --cost latency --lambda-cost 1", None, "needs --cost-table"),
    ("search --device tpu", None, "tpu"),
    ("search --memory-format nope", None, "--memory-format auto"),
    ("search --evaluate-on train", None, "--evaluate-on valid or test"),
    ("search --darts-order 2", None, "--strategy darts2"),
    ("search --checkpoint-every 1", None, "after every epoch"),
    ("search --strategy-options {bad", None, "not valid JSON"),
    ("search --strategy-options [1]", None, "strategy_options"),
    ("search --strategy-options '{\"nope\": 1}'", None, "nope"),
    ("search --strategy random --strategy-options '{\"candidates\": 0}'", None, "candidates"),
    ("search --strategy fixed", None, "genotype"),
    ("search --strategy fixed --strategy-options '{\"genotype\": \"{tmp}/dir\"}'", "dir",
     "genotype"),
    ("search --task lm --nhid 0", None, "--nhid 1 or more"),
    ("search --task lm --bptt 1", None, "--bptt 2 or more"),
    ("search --task lm --dropout 1", None, "--dropout in [0, 1)"),
    ("search --task lm --dropoute -0.5", None, "--dropoute in [0, 1)"),
    # --- search: files and folders ------------------------------------------------------------
    ("search --cost-table {tmp}/dir --cost latency --lambda-cost 1", "dir", "is a folder"),
    ("search --cost-table {tmp}/missing.json --cost latency --lambda-cost 1", None,
     "does not exist"),
    ("search --cost-table {tmp}/file.txt --cost latency --lambda-cost 1", "file",
     "not valid JSON"),
    ("search --cost-table '' --cost latency --lambda-cost 1", None, "invalid cost_table: ''"),
    ("search --config {tmp}/dir", "dir", "is a folder, not a file"),
    ("search --config {tmp}/missing.json", None, "does not exist"),
    ("search --config {tmp}/file.txt", "file", "not valid JSON"),
    ("search --config ''", None, "empty"),
    ("search --config {tmp}/cfg.json", NULL_CHANNELS, "invalid channels: null"),
    ("search --config {tmp}/cfg.json", {"cfg.json": '{"epochs": null}'}, "invalid epochs: null"),
    ("search --config {tmp}/cfg.json", {"cfg.json": '{"seed": 99999999999999999999}'},
     "--seed between 0 and 4294967295"),
    ("search --config {tmp}/cfg.json", {"cfg.json": '{"seed": 1e30}'}, "not a whole number"),
    ("search --config {tmp}/cfg.json", {"cfg.json": '[1, 2]'}, "must hold a JSON object"),
    ("search --config {tmp}/cfg.json", {"cfg.json": ''}, "not valid JSON"),
    ("search --config {tmp}/cfg.json", {"cfg.json": '{"lambda_params": null}'},
     "invalid lambda_params: null"),
    ("search --config {tmp}/cfg.json", {"cfg.json": '{"out": ""}'}, "invalid out: ''"),
    ("search --out ''", None, "invalid out: ''"),
    ("search --out {tmp}/file.txt", "file", "is a file, not a folder"),
    ("search --out {tmp}/file.txt/x", "file", "a file stands where a folder is needed"),
    ("search --out /proc/nasp-x", None, "/proc/nasp-x"),
    ("search --out {tmp}/search", "search", "already holds a run"),
    ("search --data-root '' --data cifar10", None, "invalid data_root: ''"),
    ("search --data-root {tmp}/file.txt --data cifar10", "file", "the dataset's folder"),
    ("search --data-root {tmp}/dir --data cifar10", "dir", "dir"),
    ("search --data cifar10", None, "--data-root"),
    ("search --resume {tmp}/file.txt", "file", "is a file, not a run folder"),
    ("search --resume ''", None, "empty"),
    ("search --resume {tmp}/missing", None, "does not exist"),
    ("search --resume {tmp}/dir", "dir", "no config.json"),
    ("search --resume {tmp}/search --config {tmp}/cfg.json", ("search", {"cfg.json": "{}"}),
     "cannot be combined with --resume"),
    ("search --resume {tmp}/search --lr 0.1", "search", "--lr cannot change when resuming"),
    ("search --resume {tmp}/search --threads 0", "search", "--threads 1 or more"),
    ("search --resume {tmp}/train", "train", "resume it with `nasp train --resume"),
    ("search --resume {tmp}/search", "empty checkpoint", "cannot be read"),
    ("search --resume {tmp}/search --overwrite", "search", "either"),
    ("search --continue --overwrite", None, "either"),
    ("search --continue --resume {tmp}/search", "search", "either"),
    ("search --continue --out {tmp}/search --lr 0.5", "search", "made with other options"),
    # --- train --------------------------------------------------------------------------------
    ("train --genotype nope", None, "unknown genotype 'nope'"),
    ("train --genotype ''", None, "invalid genotype: ''"),
    ("train --genotype {tmp}/dir", "dir", "does not exist"),
    ("train --genotype {tmp}/file.txt", "file", "not valid JSON"),
    ("train --genotype {tmp}/g.json", {"g.json": "\udcff"}, "not valid JSON"),
    ("train --genotype {tmp}/g.json", {"g.json": "[]"}, "g.json"),
    (f"train --seed {HUGE}", None, "--seed between 0 and 4294967295"),
    ("train --seed -1", None, "--seed between 0 and 4294967295"),
    ("train --epochs 0", None, "--epochs 1 or more"),
    ("train --batch-size 0", None, "--batch-size 1 or more"),
    ("train --lr -1", None, "positive --lr"),
    ("train --lr inf", None, "must be finite"),
    ("train --layers 2", None, "--layers 3 or more"),
    ("train --channels 5", None, "even --channels"),
    ("train --cutout -1", None, "--cutout 0 (off) or more"),
    ("train --log-every 0", None, "--log-every 1 or more"),
    ("train --max-train-samples 0", None, "invalid max_train_samples: 0"),
    ("train --memory-format nope", None, "--memory-format"),
    ("train --data nope", None, "nope"),
    ("train --device tpu", None, "tpu"),
    ("train --task nope", None, "invalid choice"),
    ("train --no-progress", None, "use --quiet"),
    ("train --config {tmp}/dir", "dir", "is a folder, not a file"),
    ("train --config {tmp}/cfg.json", NULL_CHANNELS, "invalid channels: null"),
    ("train --config ''", None, "empty"),
    ("train --out ''", None, "invalid out: ''"),
    ("train --out {tmp}/file.txt/x", "file", "a file stands where a folder is needed"),
    ("train --out /proc/nasp-x", None, "/proc/nasp-x"),
    ("train --out {tmp}/train", "train", "already holds a run"),
    ("train --resume {tmp}/file.txt", "file", "is a file, not a run folder"),
    ("train --resume ''", None, "empty"),
    ("train --resume {tmp}/search", "search", "resume it with `nasp search --resume"),
    ("train --resume {tmp}/train --lr 0.5", "train", "--lr cannot change when resuming"),
    ("train --task lm --genotype DARTS_V2 --emsize 10 --nhid 20", None, "--emsize and --nhid"),
    ("train --task lm --bptt 1", None, "--bptt 2 or more"),
    ("train --task lm --dropout 1.5", None, "--dropout in [0, 1)"),
    ("train --task lm --genotype NASP_12", None, "NASP_12"),
    # --- compare ------------------------------------------------------------------------------
    ("compare", None, "--out"),
    ("compare --out ''", None, "empty"),
    ("compare --out {tmp}/search", "search", "holds a `nasp search` run"),
    ("compare --out {tmp}/train", "train", "holds a `nasp train` run"),
    ("compare --out {tmp}/file.txt", "file", "is a file, not a folder"),
    ("compare --out {tmp}/file.txt/x", "file", "a file stands where a folder is needed"),
    ("compare --out /proc/nasp-x", None, "/proc/nasp-x"),
    ("compare --out c --strategies nope", None, "unknown strategy 'nope'"),
    ("compare --out c --strategies ''", None, "no strategies given"),
    ("compare --out c --strategies nasp,nasp", None, "repeat an entry"),
    ("compare --out c --seeds a,b", None, "cannot read seeds"),
    ("compare --out c --seeds ''", None, "no seeds given"),
    ("compare --out c --seeds 0,0", None, "repeat an entry"),
    ("compare --out c --seeds -1", None, "between 0 and 4294967295"),
    (f"compare --out c --seeds 0,{HUGE}", None, "between 0 and 4294967295"),
    ("compare --out c --jobs 0", None, "--jobs 1 or more"),
    ("compare --out c --jobs 2 --in-process", None, "a process each"),
    ("compare --out c --score-epochs 0", None, "--score-epochs 1 or more"),
    ("compare --out c --epochs 0", None, "--epochs 1 or more"),
    ("compare --out c --lr inf", None, "must be finite"),
    ("compare --out c --log-every 0", None, "--log-every 1 or more"),
    ("compare --out c --threads 0", None, "--threads 1 or more"),
    ("compare --out c --space nope", None, "unknown search space 'nope'"),
    ("compare --out c --preset nope", None, "unknown preset 'nope'"),
    ("compare --out c --device tpu", None, "tpu"),
    ("compare --out c --memory-format nope", None, "--memory-format"),
    ("compare --out c --config {tmp}/dir", "dir", "is a folder, not a file"),
    ("compare --out c --config {tmp}/cfg.json", NULL_CHANNELS, "invalid channels: null"),
    ("compare --out c --strategy-options '{\"zzz\": {}}'", None, "not in --strategies"),
    ("compare --out c --strategy-options '{\"nasp\": 1}'", None, "must be a JSON object"),
    ("compare --out c --strategies asap --strategy-options '{\"asap\": {\"zzz\": 1}}'", None,
     "zzz"),
    ("compare --out c --seed 1", None, "unrecognized arguments"),
    ("compare --out c --plan ''", None, "empty"),
    ("compare --out c --plan {tmp}/dir", "dir", "is a folder"),
    ("compare --out c --plan {tmp}/file.txt/p.txt", "file", "a file stands where a folder"),
    ("compare --out c --plan p.txt --launch ''", None, "--launch"),
    ("compare --out c --plan p.txt --launch \"torchrun 'unclosed\"", None, "--launch"),
    ("compare --out {tmp}/search --plan p.txt", "search", "holds a `nasp search` run"),
    # --- plot ---------------------------------------------------------------------------------
    ("plot", None, "required"),
    ("plot {tmp}/missing", None, "does not exist"),
    ("plot ''", None, "empty"),
    ("plot {tmp}/file.txt", "file", "is a file, not a run folder"),
    ("plot {tmp}/dir", "dir", "holds none"),
    ("plot {tmp}/search -o ''", "search", "empty"),
    ("plot {tmp}/search -o {tmp}/search/config.json", "search", "is a file, not a folder"),
    ("plot {tmp}/search -o {tmp}/search/config.json/x", "search",
     "a file stands where a folder is needed"),
    ("plot {tmp}/search -o /proc/nasp-x", "search", "/proc/nasp-x"),
    ("plot {tmp}/search --kind nope", "search", "invalid choice"),
    ("plot {tmp}/search --format gif", "search", "invalid choice"),
    ("plot {tmp}/train --kind arch", "train", "arch.jsonl"),
    ("plot {tmp}/search --kind nb201", "search", "NAS-Bench-201"),
    # --- report -------------------------------------------------------------------------------
    ("report", None, "required"),
    ("report {tmp}/missing", None, "does not exist"),
    ("report ''", None, "empty"),
    ("report {tmp}/file.txt", "file", "is a file, not a run folder"),
    ("report {tmp}/dir", "dir", "holds none"),
    ("report {tmp}/search -o ''", "search", "empty"),
    ("report {tmp}/search -o {tmp}/search", "search", "is a folder"),
    ("report {tmp}/search -o /proc/nasp-x.html", "search", "/proc/nasp-x.html"),
    ("report {tmp}/search -o {tmp}/search/config.json/r.html", "search",
     "a file stands where a folder is needed"),
    # --- draw ---------------------------------------------------------------------------------
    ("draw", None, "required"),
    ("draw nope", None, "nope"),
    ("draw ''", None, "empty"),
    ("draw {tmp}/dir", "dir", "no config.json"),
    ("draw {tmp}/file.txt", "file", "not valid JSON"),
    ("draw {tmp}/search/config.json", "search", None),
    ("draw '|bad~0|'", None, "bad"),
    ("draw DARTS_V2 -o ''", None, "empty"),
    ("draw DARTS_V2 -o x.gif", None, ".gif"),
    ("draw DARTS_V2 -o {tmp}/dir", "dir", "is a folder"),
    ("draw DARTS_V2 -o /proc/nasp-x.svg", None, "/proc/nasp-x.svg"),
    ("draw DARTS_V2 --split -o /proc/nasp-x.svg", None, "/proc"),
    ("draw DARTS_V2 -o {tmp}/file.txt/x.svg", "file", "a file stands where a folder is needed"),
    ("draw DARTS_V2 --split -o {tmp}/file.txt/x.svg", "file",
     "a file stands where a folder is needed"),
    ("draw DARTS_V2 --engine nope", None, "invalid choice"),
    ("draw DARTS_V2 --task xx", None, "invalid choice"),
    ("draw NASP_12 --task lm", None, "NASP_12"),
    # --- info ---------------------------------------------------------------------------------
    ("info", None, "--genotype"),
    ("info --genotype nope", None, "unknown genotype 'nope'"),
    ("info --genotype ''", None, "empty"),
    ("info --genotype {tmp}/dir", "dir", "does not exist"),
    ("info --genotype {tmp}/file.txt", "file", "not valid JSON"),
    ("info --genotype NASP_12 --task lm", None, "NASP_12"),
    ("info --genotype DARTS_V2 --latency --repeats 0", None, "--repeats 1 or more"),
    ("info --genotype DARTS_V2 --latency --repeats -1", None, "--repeats 1 or more"),
    ("info --genotype DARTS_V2 --latency --batch-size 0", None, "--batch-size 1 or more"),
    ("info --genotype DARTS_V2 --latency --threads 0", None, "--threads 1 or more"),
    ("info --genotype DARTS_V2 --latency --threads -2", None, "--threads 1 or more"),
    ("info --genotype DARTS_V2 --latency --device tpu", None, "tpu"),
    ("info --genotype DARTS_V2 --clock nope", None, "invalid choice"),
    ("info --genotype DARTS_V2 --cost-table {tmp}/dir", "dir", "is a folder"),
    ("info --genotype DARTS_V2 --cost-table {tmp}/missing.json", None, "does not exist"),
    ("info --genotype DARTS_V2 --cost-table {tmp}/file.txt", "file", "not valid JSON"),
    ("info --genotype DARTS_V2 --cost-table ''", None, "empty"),
    ("info --genotype DARTS_V2 --cost-table {tmp}/costs.json --repeats 0", "costs",
     "--repeats 1 or more"),
    ("info --genotype DARTS_V2 --cost-table {tmp}/costs.json --layers 8", "costs",
     "measured on a 3-cell"),
    ("info --genotype DARTS_V2 --layers 0", None, "--layers 3 or more"),
    ("info --genotype DARTS_V2 --channels 0", None, "even --channels"),
    ("info --genotype DARTS_V2 --channels -4", None, "even --channels"),
    ("info --genotype DARTS_V2 --data nope", None, "nope"),
    ("info --genotype DARTS_V2 --data folder", None, "--data-root"),
    ("info --genotype DARTS_V2 --task lm --ntokens 0", None, "--ntokens 1 or more"),
    ("info --genotype DARTS_V2 --task lm --emsize 0", None, "--emsize 1 or more"),
    ("info --genotype DARTS_V2 --task lm --emsize 10 --nhid 20", None, "must equal nhid"),
    ("info --genotype DARTS_V2 --task lm --latency", None, "for CNN genotypes"),
    # --- export -------------------------------------------------------------------------------
    ("export {tmp}/train", "train", "-o"),
    ("export {tmp}/train -o /proc/nasp-x.pt2", "train", "/proc/nasp-x.pt2"),
    ("export {tmp}/train -o /proc/nasp-x.safetensors", "train", "/proc/nasp-x.safetensors"),
    ("export {tmp}/train -o {tmp}/dir.onnx", ("train", "dir.onnx"), "is a folder"),
    ("export {tmp}/train -o {tmp}/train/config.json/x.onnx", "train",
     "a file stands where a folder is needed"),
    ("export {tmp}/train -o ''", "train", "empty"),
    ("export {tmp}/train -o x.zip", "train", ".zip"),
    ("export {tmp}/train -o x.pt2 --format nope", "train", "invalid choice"),
    ("export {tmp}/search -o x.pt2", "search", "nasp train"),
    ("export {tmp}/missing -o x.pt2", None, "does not exist"),
    ("export '' -o x.pt2", None, "empty"),
    ("export {tmp}/file.txt -o x.pt2", "file", "cannot be read"),
    ("export {tmp}/dir -o x.pt2", "dir", "dir"),
    # --- profile ------------------------------------------------------------------------------
    ("profile --threads 0", None, "--threads 1 or more"),
    ("profile --threads -1", None, "--threads 1 or more"),
    ("profile -o /proc/nasp-x.json", None, "/proc/nasp-x.json"),
    ("profile -o ''", None, "empty"),
    ("profile -o {tmp}/dir", "dir", "is a folder"),
    ("profile -o {tmp}/file.txt/x.json", "file", "a file stands where a folder is needed"),
    ("profile --space nope", None, "unknown search space 'nope'"),
    ("profile --space rnn", None, "rnn"),
    ("profile --data nope", None, "nope"),
    ("profile --preset nope", None, "unknown preset 'nope'"),
    ("profile --layers 0", None, "--layers 3 or more"),
    ("profile --channels 0", None, "even --channels"),
    ("profile --channels 3", None, "even --channels"),
    ("profile --batch-size 0", None, "--batch-size 1 or more"),
    ("profile --warmup -1", None, "--warmup 0 or more"),
    ("profile --repeats 0", None, "--repeats 1 or more"),
    ("profile --device tpu", None, "tpu"),
    ("profile --clock nope", None, "invalid choice"),
    ("profile --data folder", None, "--data-root"),
    ("profile --data folder --data-root {tmp}/file.txt", "file", "the dataset's folder"),
    # --- latency: nasp costs fit, --target-device, --latency-target, --device-latency ------
    ("costs", None, "needs an action"),
    ("costs bogus", None, "invalid choice"),
    ("costs fit --device-latency iphone", None, "27 devices"),
    ("costs fit --device-latency fpga --samples 20000", None, "15625"),
    ("costs fit --device-latency fpga --samples 0", None, None),
    ("costs fit --device-latency fpga --samples many", None, None),
    ("costs fit --device-latency fpga --seed -1", None, "--seed between 0 and"),
    (f"costs fit --device-latency fpga --seed {HUGE}", None, "--seed between 0 and"),
    ("costs fit --device-latency fpga --dead-ends maybe", None, "invalid choice"),
    ("costs fit --device-latency fpga --space darts", None, None),
    ("costs fit --device-latency fpga --csv {tmp}/m.csv", {"m.csv": "x,1\n"},
     "not allowed with argument"),
    ("costs fit --csv {tmp}/none.csv", None, "none.csv"),
    ("costs fit --csv {tmp}/m.csv", {"m.csv": "genotype,ms\n|nor_conv_3x3~0|+|none~0|"
                                                "none~1|+|none~0|none~1|none~2|,n/a\n"},
     "line 2"),
    ("costs fit --csv {tmp}/m.csv", {"m.csv": "|nor_conv_3x3~0|+|bogus~0|,5\n"}, "line 1"),
    ("costs fit --csv {tmp}/dir", "dir", None),
    ("costs fit --device-latency fpga -o /proc/nasp-fit.json", None, None),
    ("costs fit --device-latency fpga -o {tmp}/dir", "dir", None),
    ("info --genotype DARTS_V2 --device-latency raspi4", None, None),
    ("info --genotype '|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|' "
     "--device-latency iphone", None, "27 devices"),
    ("search --space nb201 --target-device iphone", None, "27 devices"),
    ("search --target-device raspi4", None, "NAS-Bench-201"),
    ("search --space nb201 --latency-target 8", None, "cost table"),
    ("search --space nb201 --latency-target 0 --cost-table {tmp}/costs.json", "costs",
     "latency_target"),
    ("search --space nb201 --latency-target -3 --cost-table {tmp}/costs.json", "costs",
     "latency_target"),
    ("search --space nb201 --latency-target nan --cost-table {tmp}/costs.json", "costs",
     "finite"),
    ("search --space nb201 --strategy random --latency-target 8 --cost-table "
     "{tmp}/costs.json", "costs", "random"),
    ("search --space nb201 --latency-target 8 --latency-step 0 --cost-table {tmp}/costs.json",
     "costs", "latency-step"),
    ("search --space nb201 --latency-target 8 --latency-margin -1 --cost-table "
     "{tmp}/costs.json", "costs", "latency_margin"),
    # --- your own model (--space FILE.py:FUNCTION, --arch RUN) -----------------------------
    ("search --space {tmp}/none.py:net", None, "none.py does not exist"),
    ("search --space {tmp}/m.py:nope", OWN, "has no function 'nope'"),
    ("search --space {tmp}/m.py:", OWN, "names no function"),
    ("search --space {tmp}/bad.py:net", OWN, "importing"),
    ("search --space {tmp}/m.py:three", OWN, "returned a int, not a torch.nn.Module"),
    ("search --space {tmp}/m.py:plain", OWN, "holds no nasp.Choice"),
    ("search --space {tmp}/m.py:shapes", OWN, "different shapes"),
    ("search --space {tmp}/m.py:net --task lm", OWN, "searches images"),
    ("search --space no_such_pkg.mod:net", None, "cannot be imported"),
    ("search --task model", None, "nasp.search(model=net"),
    ("search --space {tmp}/m.py:net --cost latency --lambda-cost 1", OWN, "--cost-table"),
    ("search --space {tmp}/m.py:net --cost latency --lambda-cost 1 --cost-table {tmp}/costs.json",
     {**OWN, "costs.json": "{}"}, "not a nasp cost table"),
    ("train --arch {tmp}/none", None, "no config.json"),
    ("train --arch {tmp}/search", "search", "built-in space"),
    ("train --arch {tmp}/train", "train", "not a search run"),
    ("train --arch {tmp}/search --genotype DARTS_V2", "search", "--genotype and --arch"),
    ("train --arch ''", None, "invalid arch: ''"),
    ("info --arch {tmp}/search", "search", "built-in space"),
    ("info --arch {tmp}/none", None, "no config.json"),
    ("info --arch {tmp}/x --genotype DARTS_V2", None, "not allowed with argument"),
    ("profile --space {tmp}/m.py:nope", OWN, "has no function 'nope'"),
    ("profile --space {tmp}/m.py:net --layers 5", OWN, "does not apply to your own model"),
]


def _ids() -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for argv, setup, _ in CASES:
        key = argv if setup is None or isinstance(setup, str) else f"{argv} [{setup}]"
        seen[key] = seen.get(key, 0) + 1
        out.append(key if seen[key] == 1 else f"{key} #{seen[key]}")
    return out


def prepare(setup: Any, made: Path, tmp: Path) -> None:
    for item in setup if isinstance(setup, tuple) else (setup,):
        if item is None:
            continue
        if isinstance(item, dict):
            for name, text in item.items():
                (tmp / name).write_bytes(text.encode("utf-8", "surrogateescape"))
        else:
            SETUPS[item](made, tmp)


def tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every file and folder under ``root``: files with size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file()
            else None for p in sorted(root.rglob("*"))}


def run_in_process(argv: list[str]) -> tuple[int, str, str]:
    """``nasp ARGV`` through ``nasp.cli.main``: (exit status, stdout, stderr). A traceback is
    caught and returned in stderr, as the real command would print it."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
    except Exception:  # what the real command would show
        import traceback

        err.write(traceback.format_exc())
        code = 1
    finally:
        torch.set_num_threads(threads)  # profile and info --threads change it
    return code, out.getvalue(), err.getvalue()


def check_refused(code: int, out: str, err: str) -> None:
    assert "Traceback" not in err, err
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert out == "", out


def argv_of(line: str, tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in shlex.split(line)]


@pytest.mark.parametrize("line, setup, expected", CASES, ids=_ids())
def test_bad_input_is_one_error_line_and_changes_nothing(made, tmp_path, monkeypatch, line,
                                                         setup, expected):
    prepare(setup, made, tmp_path)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    code, out, err = run_in_process(argv_of(line, tmp_path))
    check_refused(code, out, err)
    if expected is not None:
        assert expected in err, err
    assert tree(tmp_path) == before


def test_the_table_covers_every_subcommand_with_150_cases():
    from nasp.cli import SUBCOMMANDS

    commands = {shlex.split(line)[0] for line, _, _ in CASES if line}
    assert set(SUBCOMMANDS) <= commands
    assert len(CASES) >= 150


# a few rows, run as the real command: the in-process harness must answer as it does
REAL = [
    f"search --seed {HUGE}",
    "search --config {tmp}/cfg.json",
    "compare --out c --seeds a,b",
    "draw DARTS_V2 --split -o /proc/nasp-x.svg",
    "profile --threads 0",
    "bogus",
]


@pytest.mark.parametrize("line", REAL)
def test_the_real_command_answers_as_the_harness_does(made, tmp_path, monkeypatch, line):
    setup = next(s for row, s, _ in CASES if row == line)
    prepare(setup, made, tmp_path)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    argv = argv_of(line, tmp_path)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    real = subprocess.run([sys.executable, "-m", "nasp", *argv], env=env, capture_output=True,
                          text=True, timeout=120)
    check_refused(real.returncode, real.stdout, real.stderr)
    assert tree(tmp_path) == before
    assert run_in_process(argv) == (real.returncode, real.stdout, real.stderr)
