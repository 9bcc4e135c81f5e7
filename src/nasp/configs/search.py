"""The search configuration: every option of ``nasp search`` with its default, and presets.

The resolved config is written to the run folder (config.json), so ``--resume`` needs nothing
else and the folder says exactly how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from nasp.configs.base import RunConfig, check_values, common_checks, opt
from nasp.errors import NaspError

SPLITS = ("valid", "test")
COMPILE_MODES = ("off", "on", "auto")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
COSTS = ("params", "madds", "latency")


@dataclass
class SearchConfig(RunConfig):
    COMMAND: ClassVar[str] = "search"
    RESUMABLE: ClassVar[frozenset[str]] = frozenset(
        {"device", "log_every", "data_root", "tensorboard", "check_sync", "dist_timeout",
         "threads"})
    ALIASES: ClassVar[dict] = {
        # the paper's model-size regularizer is the parameter cost (NASP §3.3)
        "lambda_params": lambda v: {"cost": "params", "lambda_cost": v},
    }
    REMOVED: ClassVar[dict[str, str]] = {
        "darts_order": "use --strategy darts2 for second-order DARTS (darts is first order)",
        "checkpoint_every": "checkpoints are written after every epoch; drop the option",
    }

    # what to search
    task: str = opt("cnn", "cnn (image classification) or lm (language model); model: a "
                    "model and data from Python (nasp.search(model=...))")
    strategy: str = opt("nasp", "nasp, darts (1st order), darts2 (2nd order), pa, pa-lazy, "
                        "asap, random, fixed")
    space: str = opt("nasp-7", "search space: darts, nasp-7, nasp-12, nb201 (cnn); rnn, "
                     "rnn-darts (lm); or your own model with choices: FILE.py:FUNCTION or "
                     "package.module:FUNCTION, FUNCTION(in_channels, num_classes) returning it")
    data: str = opt("fashion-mnist-sample", "dataset: fashion-mnist-sample (bundled), "
                    "fashion-mnist, mnist, cifar10, cifar100, imagenet16-120, folder, "
                    "tiny-imagenet; ptb, wikitext-2 (lm)")
    data_root: str | None = opt(None, "folder holding the dataset's files")
    preset: str = opt("quick", "quick (minutes on a CPU), paper (the published recipe); nb201 "
                      "(NAS-Bench-201's protocol), nb201-quick")
    seed: int = opt(0, "random seed of initialisation, splits, data order and augmentation "
                     "(0 to 4294967295)")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    threads: int | None = opt(None, "CPU threads of each process (default: torch's, as "
                              "OMP_NUM_THREADS sets it); the checkpoint records the count, and "
                              "a resume uses it unless --threads is given: sums over another "
                              "number of threads round differently, so results then differ")
    out: str | None = opt(None, "run folder (default: runs/<strategy>-<space>-<data>-s<seed>)")
    # budget
    epochs: int = opt(50, "search epochs")
    batch_size: int = opt(64, "batch size of both the weight and the architecture step")
    train_portion: float = opt(0.5, "share of the training set that trains the weights; the "
                               "rest trains the architecture")
    max_train_samples: int | None = opt(None, "use a stratified subset of this many training "
                                        "samples (images)")
    max_steps_per_epoch: int | None = opt(None, "cap the iterations per epoch")
    evaluate_on: str = opt("valid", "split of the per-epoch validation metrics: valid (the "
                           "architecture split) or test (held out; what `nasp compare` scores "
                           "final architectures on)")
    # network weights
    lr: float = opt(0.025, "weight learning rate (SGD, cosine schedule)")
    lr_min: float = opt(0.001, "final weight learning rate")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(3e-4, "L2 weight decay of the network weights")
    grad_clip: float = opt(5.0, "clip the weight gradient norm to this; 0 turns clipping off")
    # architecture parameters
    arch_lr: float = opt(3e-4, "architecture learning rate")
    arch_betas: tuple[float, float] = opt((0.5, 0.999), "Adam betas of the architecture step, "
                                          "e.g. 0.5,0.999")
    arch_weight_decay: float = opt(1e-3, "weight decay of the architecture parameters")
    # cost regularizer (NASP §3.3, generalised)
    cost: str = opt("params", "per-operation cost the regularizer charges: params, madds or "
                    "latency (madds and latency need --cost-table)")
    cost_table: str | None = opt(None, "cost table of `nasp profile` (JSON)")
    lambda_cost: float = opt(0.0, "regularizer weight λ of R = λ Σ c[e,k] W[e,k]², costs c "
                             "normalised so an edge's costs sum to 1 on average over the cell "
                             "(the release's p_k/Σp on normal cells); --lambda-params λ is "
                             "--cost params --lambda-cost λ")
    # a latency budget (nasp.strategies.budget)
    latency_target: float | None = opt(None, "latency budget in ms: the final architecture's "
                                       "latency predicted by --cost-table meets it; the "
                                       "regularizer charges latency and λ adapts itself "
                                       "(starting at --lambda-cost)")
    latency_margin: float | None = opt(None, "aim at target / (1 + margin), so the measured "
                                       "latency meets the target where the table "
                                       "under-predicts (default: the fitted table's 90th "
                                       "percentile of leave-one-out under-prediction; 0 for "
                                       "a `nasp profile` table)")
    latency_step: float = opt(0.02, "dual-ascent step of λ per architecture step: λ += step "
                              "(latency / aim - 1), at least 0")
    target_device: str | None = opt(None, "nb201 only: record the held cell's measured "
                                    "latency on this device (shipped table, 27 devices) per "
                                    "epoch and in result.json")
    # CNN supernet
    channels: int = opt(16, "initial channels of the search network")
    layers: int = opt(8, "cells of the search network")
    stem_multiplier: int = opt(3, "stem channels = this x channels")
    crop_padding: int | None = opt(None, "random-crop padding (default: 4 for >=32 px images, "
                                   "else 2)")
    hflip: bool | None = opt(None, "random horizontal flips (default: as the dataset says)")
    cutout: int = opt(0, "cutout length in pixels (0: off)")
    # recurrent supernet (task lm)
    emsize: int = opt(300, "embedding size (lm)")
    nhid: int = opt(300, "hidden size (lm)")
    bptt: int = opt(35, "window length in tokens (lm)")
    dropout: float = opt(0.75, "dropout on the cell output (lm)")
    dropouth: float = opt(0.25, "dropout on the hidden state entering each node (lm)")
    dropoutx: float = opt(0.75, "dropout on the input entering node 0 (lm)")
    dropouti: float = opt(0.2, "dropout on the embeddings (lm)")
    dropoute: float = opt(0.0, "embedding dropout, whole words (lm)")
    eval_batch_size: int = opt(10, "parallel streams of the validation pass (lm)")
    # strategy-specific options (ASAP temperature etc.), documented by each strategy
    strategy_options: dict[str, Any] = opt({}, "JSON object of strategy-specific options, "
                                           "e.g. '{\"t0\": 5}'")
    # bookkeeping
    log_every: int = opt(10, "steps between progress updates (each one reads values off the "
                         "device)")
    tensorboard: bool = opt(False, "also write TensorBoard logs to RUN/tb (needs the "
                            "tensorboard package)")
    check_sync: bool = opt(False, "with several processes, compare checksums of the "
                           "architecture and the weights across ranks every epoch")
    memory_format: str = opt("auto", "layout of images and activations: auto (channels_last on "
                             "CPU and CUDA, where it measured faster), channels_last or "
                             "contiguous; config.json records the resolved one")
    amp: bool | None = opt(None, "bf16 autocast for the weight step (default: on for CUDA); the "
                           "architecture gradient stays in float32")
    compile: str = opt("off", "compiled steps (torch.compile per op, probe and mixed edge): off, "
                       "on, or auto (on for CUDA; eager on the CPU, where compiled steps "
                       "measured no faster); config.json records the resolved one and a resume "
                       "keeps it")
    dist_timeout: float = opt(600.0, "with several processes, seconds a collective may wait "
                              "for a rank before the run stops naming it")

    @classmethod
    def preset_values(cls, layered: dict[str, Any]) -> dict[str, Any]:
        task = layered.get("task", cls.task)
        preset = layered.get("preset", cls.preset)
        if layered.get("space") == "nb201" and preset in ("quick", "paper"):
            # NAS-Bench-201 has its own network and protocol: quick and paper mean its own
            preset = {"quick": "nb201-quick", "paper": "nb201"}[preset]
        try:
            values = dict(PRESETS[(task, preset)])
        except KeyError:
            names = sorted({p for t, p in PRESETS if t == task})
            raise NaspError(f"unknown preset {preset!r} for task {task!r}",
                            f"use --preset with one of: {', '.join(names) or '(none)'}") from None
        return {**values, "preset": preset}

    def validate(self) -> None:
        checks = common_checks(self) + [
            (self.task in ("cnn", "lm", "model"), "task", "use --task cnn or --task lm"),
            (0 < self.train_portion < 1, "train_portion", "use a value strictly between 0 "
             "and 1"),
            (self.lr_min >= 0, "lr_min", "use --lr-min 0 or more"),
            (self.arch_lr >= 0, "arch_lr", "use --arch-lr 0 or more"),
            (all(0 <= b < 1 for b in self.arch_betas), "arch_betas",
             "use two values in [0, 1), e.g. --arch-betas 0.5,0.999"),
            (self.arch_weight_decay >= 0, "arch_weight_decay",
             "use --arch-weight-decay 0 or more"),
            (self.lambda_cost >= 0, "lambda_cost", "use --lambda-cost 0 or more"),
            (self.cost in COSTS, "cost", f"use --cost {', '.join(COSTS)}"),
            (self.cost == "params" or self.cost_table is not None or self.lambda_cost == 0
             or (self.cost == "madds" and self.own_model),  # measured on a sample batch
             "cost", "--cost madds or latency needs --cost-table (made by `nasp profile`)"),
            (self.latency_target is None or self.latency_target > 0, "latency_target",
             "use a positive --latency-target in ms"),
            (self.latency_target is None or self.cost_table is not None, "latency_target",
             "--latency-target needs a cost table to predict latency: --cost-table from "
             "`nasp profile` (this machine) or `nasp costs fit` (measured networks)"),
            (self.latency_target is None or self.cost != "madds", "cost",
             "--latency-target charges latency; leave out --cost madds"),
            (self.latency_margin is None or 0 <= self.latency_margin < 10, "latency_margin",
             "use --latency-margin in [0, 10), e.g. 0.1 for 10%"),
            (self.latency_step > 0, "latency_step", "use a positive --latency-step"),
            (self.evaluate_on in SPLITS, "evaluate_on", "use --evaluate-on valid or test"),
            (self.stem_multiplier >= 1, "stem_multiplier", "use --stem-multiplier 1 or more"),
            (self.eval_batch_size >= 1, "eval_batch_size", "use --eval-batch-size 1 or more"),
            (self.dist_timeout > 0, "dist_timeout", "use a positive --dist-timeout"),
            (self.threads is None or self.threads >= 1, "threads", "use --threads 1 or more"),
            (self.memory_format in MEMORY_FORMATS, "memory_format",
             f"use --memory-format {', '.join(MEMORY_FORMATS)}"),
            (self.compile in COMPILE_MODES, "compile",
             f"use --compile {', '.join(COMPILE_MODES)}"),
        ]
        check_values(self, checks)
        if self.cost_table is not None:
            from nasp.files import input_file

            input_file(self.cost_table, "--cost-table", "cost table")
        if self.tensorboard:  # a missing package fails now, not after the first epoch
            from nasp.tensorboard import require_tensorboard

            require_tensorboard()
        from nasp.spaces import get_space
        from nasp.spaces.model import is_model_ref, load_factory
        from nasp.strategies import get_strategy

        strategy = get_strategy(self.strategy)
        own = self.own_model
        if self.latency_target is not None:
            self.cost = "latency"  # recorded resolved: the budget charges latency
            if not strategy.takes_budget:
                raise NaspError(f"strategy {self.strategy!r} does not search under a latency "
                                "budget", "use --strategy nasp, pa, pa-lazy, darts, darts2 or "
                                "asap with --latency-target, or leave the target out")
            if not own:  # a user model's space exists once its model is built
                from nasp.strategies.build import latency_budget

                latency_budget(self)  # the table, its space, a reachable target: before work
        if self.target_device is not None:
            from nasp.nb201.latency import check_device

            check_device(self.target_device)
            if own or get_space(self.space).family != "nb201":
                raise NaspError(f"--target-device reads measured latencies of NAS-Bench-201 "
                                f"cells; space {self.space!r} has none",
                                "use --space nb201, or leave --target-device out")
        if self.task == "model":  # the model comes from Python, not from --space
            return
        if is_model_ref(self.space):
            if self.task != "cnn":
                raise NaspError(f"--space {self.space} (your own model) searches images",
                                "use --task cnn, or search other data from Python: "
                                "nasp.search(model=..., train=..., valid=..., loss=...)")
            load_factory(self.space)  # a missing file or function fails now, not after data
            return
        space = get_space(self.space)
        if space.task != self.task:
            raise NaspError(f"space {self.space!r} is for task {space.task!r}, not "
                            f"{self.task!r}", f"use --task {space.task} or pick a {self.task} "
                            "space")

    @property
    def own_model(self) -> bool:
        """Whether the search runs a user's model (``--space FILE.py:FUNCTION`` or a model
        from Python) rather than a registered space."""
        from nasp.spaces.model import is_model_ref

        return self.task == "model" or is_model_ref(self.space)

    def default_out(self) -> str:
        if self.task == "model":
            return f"runs/{self.strategy}-model-s{self.seed}"
        space = self.space.rpartition(":")[2]  # FILE.py:FUNCTION -> FUNCTION
        return f"runs/{self.strategy}-{space}-{self.data}-s{self.seed}"


PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # REFERENCE.md: the CIFAR-10 search recipe of DARTS and NASP.
    ("cnn", "paper"): dict(epochs=50, batch_size=64, lr=0.025, lr_min=0.001, momentum=0.9,
                           weight_decay=3e-4, grad_clip=5.0, arch_lr=3e-4,
                           arch_weight_decay=1e-3, channels=16, layers=8, train_portion=0.5),
    # Sized so the default search on the bundled data ends in minutes on 2 CPU cores.
    ("cnn", "quick"): dict(epochs=10, batch_size=64, lr=0.025, lr_min=0.001, channels=8,
                           layers=5, max_train_samples=3000, train_portion=0.5,
                           arch_lr=3e-3),
    # NAS-Bench-201's weight-sharing search protocol on CIFAR-10 (the benchmark's DARTS runs:
    # the training set halved between weights and architecture, 50 epochs, batch 64, SGD 0.025
    # cosine to 0.001, weight decay 5e-4, Adam 3e-4 / 1e-3 for the architecture, C=16, 5 cells
    # per stage). The benchmark's runs used Nesterov momentum; nasp's SGD is plain momentum.
    ("cnn", "nb201"): dict(space="nb201", data="cifar10", epochs=50, batch_size=64, lr=0.025,
                           lr_min=0.001, momentum=0.9, weight_decay=5e-4, grad_clip=5.0,
                           arch_lr=3e-4, arch_weight_decay=1e-3, channels=16, layers=15,
                           train_portion=0.5),
    # The nb201 network on the bundled data in minutes on a CPU: C=8, one cell per stage. The
    # ground-truth columns are then the found cell's accuracies on the benchmark's datasets.
    ("cnn", "nb201-quick"): dict(space="nb201", epochs=10, batch_size=64, lr=0.025,
                                 lr_min=0.001, momentum=0.9, weight_decay=5e-4, grad_clip=5.0,
                                 arch_lr=3e-3, arch_weight_decay=1e-3, channels=8, layers=3,
                                 max_train_samples=3000, train_portion=0.5),
    # A user's own model and data (nasp.search(model=...)): the weight and architecture
    # optimizers of the image search; quick has the quick preset's tenfold architecture
    # learning rate, for searches of a few epochs.
    ("model", "paper"): dict(epochs=50, lr=0.025, lr_min=0.001, momentum=0.9,
                             weight_decay=3e-4, grad_clip=5.0, arch_lr=3e-4,
                             arch_weight_decay=1e-3),
    ("model", "quick"): dict(epochs=10, lr=0.025, lr_min=0.001, momentum=0.9,
                             weight_decay=3e-4, grad_clip=5.0, arch_lr=3e-3,
                             arch_weight_decay=1e-3),
    # REFERENCE.md: the PTB search recipe.
    ("lm", "paper"): dict(space="rnn", data="ptb", epochs=50, batch_size=256, bptt=35, lr=20.0,
                          lr_min=20.0, momentum=0.0, grad_clip=0.25, weight_decay=5e-7,
                          arch_lr=3e-3, arch_weight_decay=1e-3, emsize=300, nhid=300,
                          dropout=0.75, dropouth=0.25, dropoutx=0.75, dropouti=0.2,
                          dropoute=0.0, eval_batch_size=10),
    # A small supernet on real PTB: 3 x 60 steps of 64 x 35 tokens; eval batch 64 keeps the
    # full-validation pass short and its batch-statistics BN steady.
    ("lm", "quick"): dict(space="rnn", data="ptb", epochs=3, batch_size=64, bptt=35, lr=20.0,
                          lr_min=20.0, momentum=0.0, grad_clip=0.25, weight_decay=5e-7,
                          arch_lr=3e-3, arch_weight_decay=1e-3, emsize=64, nhid=64,
                          dropout=0.5, dropouth=0.2, dropoutx=0.5, dropouti=0.1, dropoute=0.0,
                          max_steps_per_epoch=60, eval_batch_size=64),
}
