"""The evaluation network of a CNN genotype (DARTS/NASP): trained from scratch after a search.

Layout: stem, ``layers`` cells (reductions at ``layers // 3`` and ``2 * layers // 3``), global
average pooling, a linear classifier, and optionally an auxiliary classifier after the second
reduction cell. Every cell runs only the genotype's (op, input) pairs, with affine BN.

Input channels and size come from the data. Two choices the papers leave open are made here:

* **Stem for large images.** DARTS's CIFAR stem (3x3 conv to 3C, BN) keeps the resolution, so
  the cell stack of a 32x32 image works at 32 -> 16 -> 8. Larger images (Tiny ImageNet, 64x64)
  first pass through as many stride-2 ``3x3 conv, BN, ReLU`` blocks as it takes to bring the
  side to 32 or less (one for 64x64), then the same 3x3 conv to 3C and BN. The cell stack thus
  sees 32x32 maps and costs what it costs on CIFAR; DARTS's ImageNet stem (three stride-2 convs
  for 224 -> 28) follows the same idea with one reduction per halving.
* **Auxiliary head pooling.** DARTS's ``AuxiliaryHeadCIFAR`` assumes an 8x8 map and pools it
  with a 5x5 window at stride 3 to 2x2 before its 2x2 conv. Other inputs give other maps
  (28x28 images give 7x7, where that pool would yield 1x1 and the 2x2 conv would fail). Here the
  window is ``ceil(5/8 * side)`` and the stride ``side - window``, per dimension: always a 2x2
  result, exactly DARTS's pool for 8x8, and the same 5/8 window coverage elsewhere (7x7: window
  5, stride 2). Maps smaller than 3 pixels use adaptive pooling to 2x2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.models.drop_path import drop_path, drops
from nasp.ops import (
    FactorizedReduce,
    GlobalAvgPool,
    Identity,
    ReLUConvBN,
    make_op,
    module_by_module,
    reduction_layers,
)

STEM_MULTIPLIER = 3
CELL_INPUTS = 2
MAX_CELL_SIDE = 32  # the stem halves larger images until the cell stack sees at most this


class EvalCell(nn.Module):
    """One cell of a discrete architecture: each node sums its two chosen (op, input) pairs."""

    def __init__(
        self,
        pairs: Sequence[tuple[str, int]],
        concat: Sequence[int],
        c_prev_prev: int,
        c_prev: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:  # s0 is still at twice s1's resolution
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c, affine=True)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=True)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=True)
        if reduction and any(n < CELL_INPUTS for n in concat):
            raise NaspError(f"the reduction cell concatenates cell inputs {list(concat)}; they "
                            "are at twice the resolution of its nodes",
                            "use only intermediate nodes (2..5) in reduce_concat")
        self.inputs = [int(j) for _, j in pairs]
        self.concat = [int(n) for n in concat]
        self.keep = 2
        self.ops = nn.ModuleList(
            make_op(op, c, 2 if reduction and j < CELL_INPUTS else 1, affine=True)
            for op, j in pairs
        )
        # identity edges carry the signal around a cell; dropping them would cut it (DARTS)
        self.droppable = [not isinstance(op, Identity) for op in self.ops]
        self.relu = nn.ReLU()
        self.multiplier = len(self.concat)

    def forward(self, r0: torch.Tensor, r1: torch.Tensor,
                drop_prob: float | torch.Tensor) -> torch.Tensor:
        """``r0``, ``r1``: the ReLUs of the two previous cells' outputs (see ``EvalCNN``).
        Ops that start with a ReLU of a state (the convolutions) share one ReLU per state."""
        states = [self.preprocess0.from_relu(r0), self.preprocess1.from_relu(r1)]
        relus: dict[int, torch.Tensor] = {}
        drop = drops(self.training, drop_prob)
        for start in range(0, len(self.ops), self.keep):
            total = None
            for e in range(start, start + self.keep):
                j, op = self.inputs[e], self.ops[e]
                if hasattr(op, "from_relu"):  # read per call: ops may be swapped (costs.py)
                    r = relus.get(j)
                    if r is None:
                        r = relus[j] = self.relu(states[j])
                    y = op.from_relu(r)
                else:
                    y = op(states[j])
                if drop and self.droppable[e]:
                    y = drop_path(y, drop_prob)
                total = y if total is None else total + y
            states.append(total)
        return torch.cat([states[n] for n in self.concat], dim=1)


def _aux_pool(side: tuple[int, int]) -> nn.Module:
    """A pool that maps ``side`` to 2x2 like DARTS's 5/3 pool does for 8x8 (see module doc)."""
    if min(side) < 3:
        return nn.AdaptiveAvgPool2d(2)
    kernel = tuple(math.ceil(5 * s / 8) for s in side)
    stride = tuple(s - k for s, k in zip(side, kernel, strict=True))
    return nn.AvgPool2d(kernel, stride=stride, padding=0, count_include_pad=False)


class AuxiliaryHead(nn.Module):
    """DARTS's auxiliary classifier: extra gradient to the lower cells during training only."""

    def __init__(self, c: int, num_classes: int, side: tuple[int, int]) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            _aux_pool(side),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def _stem(in_channels: int, c_stem: int, reductions: int) -> nn.Sequential:
    """3x3 conv to ``c_stem`` + BN, after ``reductions`` stride-2 conv/BN/ReLU blocks."""
    mods: list[nn.Module] = []
    c = in_channels
    for i in range(reductions):
        c_out = c_stem // 2 if i == reductions - 1 else max(c_stem // 4, 16)
        mods += [nn.Conv2d(c, c_out, 3, stride=2, padding=1, bias=False),
                 nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        c = c_out
    mods += [nn.Conv2d(c, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)]
    return nn.Sequential(*mods)


def stem_reductions(side: int) -> int:
    """How many times the stem halves an image of this side (0 for CIFAR/MNIST sizes)."""
    n = 0
    while side > MAX_CELL_SIDE:
        side = math.ceil(side / 2)
        n += 1
    return n


class EvalCNN(nn.Module):
    """The evaluation network. In training mode with the auxiliary head it returns
    ``(logits, aux_logits)``; otherwise ``logits``. Set ``drop_path_prob`` before each epoch
    (the training loop scales it linearly with the epoch)."""

    def __init__(
        self,
        genotype: Genotype,
        in_channels: int,
        num_classes: int,
        image_size: int | tuple[int, int] = 32,
        channels: int = 36,
        layers: int = 20,
        auxiliary: bool = False,
        drop_path_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if genotype.task != "cnn":
            raise NaspError("a recurrent genotype cannot build an image classifier",
                            "pass a CNN genotype (or use --task lm)")
        if genotype.family == "nb201":
            raise NaspError("an nb201 genotype has the NAS-Bench-201 network, not DARTS's",
                            "build it with build_eval_model (nasp.models.nb201.NB201Net)")
        if layers < 3:
            raise NaspError(f"invalid layers: {layers}", "use --layers 3 or more")
        if channels < 2 or channels % 2:
            raise NaspError(f"invalid channels: {channels}", "use an even --channels >= 2")
        genotype.validate()
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.genotype = genotype
        self.drop_path_prob = drop_path_prob
        reductions = stem_reductions(max(h, w))
        for _ in range(reductions):
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        c_curr = STEM_MULTIPLIER * channels
        self.stem = _stem(in_channels, c_curr, reductions)
        self.stem_reductions = reductions
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.aux_position = 2 * layers // 3
        self.auxiliary_head: AuxiliaryHead | None = None
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                c_curr *= 2
                h, w = math.ceil(h / 2), math.ceil(w / 2)
            kind = "reduce" if reduction else "normal"
            cell = EvalCell(genotype.cells[kind], genotype.concat[kind], c_prev_prev, c_prev,
                            c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if auxiliary and i == self.aux_position:
                self.auxiliary_head = AuxiliaryHead(c_prev, num_classes, (h, w))
        self.relu = nn.ReLU()  # of each cell output, shared by the two cells that read it
        self.global_pooling = GlobalAvgPool()
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        aux_logits = None
        out = self.stem(x)
        # every cell output feeds the next two cells, whose preprocessing starts with its ReLU:
        # computed (and kept for backward) once per output
        r0 = r1 = self.relu(out)
        for i, cell in enumerate(self.cells):
            out = cell(r0, r1, self.drop_path_prob)
            if i + 1 < len(self.cells):
                r0, r1 = r1, self.relu(out)
            if i == self.aux_position and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(out)
        logits = self.classifier(self.global_pooling(out))
        if aux_logits is not None:
            return logits, aux_logits
        return logits


def build_eval_model(
    genotype: Genotype,
    in_channels: int,
    num_classes: int,
    image_size: int | tuple[int, int],
    channels: int | None = None,
    layers: int | None = None,
    auxiliary: bool = False,
    drop_path_prob: float = 0.0,
) -> nn.Module:
    """The evaluation network for images of ``in_channels`` x ``image_size``; images larger
    than 32 pixels get a reducing stem (see the module docstring).

    NAS-Bench-201 genotypes get the benchmark's network (``nasp.models.nb201``): ``channels``
    is its C (default 16) and ``layers`` its number of cells, three equal stages (default 15);
    it has no auxiliary head. DARTS-style genotypes default to C=36, 20 cells."""
    if genotype.family == "nb201":
        from nasp.models.nb201 import (
            BENCHMARK_CELLS_PER_STAGE,
            BENCHMARK_CHANNELS,
            NB201Net,
        )

        if auxiliary:
            raise NaspError("the NAS-Bench-201 network has no auxiliary head",
                            "train nb201 cells without --auxiliary")
        cells = 3 * BENCHMARK_CELLS_PER_STAGE if layers is None else layers
        if cells < 3 or cells % 3:
            raise NaspError(f"invalid layers for an nb201 network: {cells}",
                            "use a multiple of 3 (three equal stages; the benchmark's is 15)")
        return NB201Net(genotype, in_channels, num_classes,
                        BENCHMARK_CHANNELS if channels is None else channels, cells // 3,
                        drop_path_prob)
    return EvalCNN(genotype, in_channels, num_classes, image_size,
                   36 if channels is None else channels, 20 if layers is None else layers,
                   auxiliary, drop_path_prob)


def _is_aux(name: str) -> bool:
    return name.split(".", 1)[0] == "auxiliary_head"


def count_params(model: nn.Module, exclude_auxiliary: bool = True) -> int:
    """Trainable parameters; the auxiliary head is left out by default because it is dropped
    after training and papers report sizes without it."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not (exclude_auxiliary and _is_aux(name)))


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of all convolutions and linear layers for one image, measured with forward
    hooks on one eval-mode forward (so the auxiliary head, which runs only in training, is not
    counted). ``input_shape`` is (C, H, W) or (1, C, H, W)."""
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() // out.shape[0] * k

    def linear_hook(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    handles = []
    for name, m in model.named_modules():
        if _is_aux(name):
            continue
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    try:
        model.eval()
        with module_by_module():  # every layer through its module, so the hooks see it
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(total)
