"""The network record: what rebuilding a trained evaluation network needs, without the data.

Train loops store these keys at the top level of ``best.pt`` and ``checkpoint.pt``; exports
copy them into their JSON. Only plain containers (str, int, float, bool, lists, dicts), so a
checkpoint stays readable with ``torch.load(..., weights_only=True)`` and a record is JSON as
it stands.

CNN: ``task``, ``genotype``, ``input_shape`` [C, H, W], ``num_classes``, ``classes``,
``mean`` and ``std`` (per channel, of images scaled to [0, 1]), ``channels``, ``layers``,
``auxiliary``, ``data``.
LM: ``task``, ``genotype``, ``ntokens``, ``vocab`` (word of each id), ``emsize``, ``nhid``,
the five dropouts (``dropout``, ``dropouth``, ``dropoutx``, ``dropouti``, ``dropoute``),
``data``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from nasp.errors import NaspError
from nasp.genotype import Genotype

CNN_KEYS = ("task", "genotype", "input_shape", "num_classes", "classes", "mean", "std",
            "channels", "layers", "auxiliary", "data")
LM_DROPOUTS = ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute")
LM_KEYS = ("task", "genotype", "ntokens", "vocab", "emsize", "nhid", *LM_DROPOUTS, "data")


def cnn_record(genotype: Genotype, input_shape: Sequence[int], classes: Sequence[str],
               mean: Sequence[float], std: Sequence[float], channels: int, layers: int,
               auxiliary: bool, data: str) -> dict[str, Any]:
    """The record of an image classifier trained on ``data``."""
    return {"task": "cnn", "genotype": genotype.to_dict(),
            "input_shape": [int(s) for s in input_shape], "num_classes": len(classes),
            "classes": [str(c) for c in classes], "mean": [float(m) for m in mean],
            "std": [float(s) for s in std], "channels": int(channels), "layers": int(layers),
            "auxiliary": bool(auxiliary), "data": str(data)}


def lm_record(genotype: Genotype, vocab: Sequence[str], emsize: int, nhid: int,
              dropouts: dict[str, float], data: str) -> dict[str, Any]:
    """The record of a language model; ``dropouts`` holds the five ``LM_DROPOUTS``."""
    return {"task": "lm", "genotype": genotype.to_dict(), "ntokens": len(vocab),
            "vocab": [str(w) for w in vocab], "emsize": int(emsize), "nhid": int(nhid),
            **{k: float(dropouts[k]) for k in LM_DROPOUTS}, "data": str(data)}


def record_of(state: dict[str, Any]) -> dict[str, Any]:
    """The record keys of a checkpoint (or export JSON); ``task`` is inferred for checkpoints
    written before it was stored (CNN checkpoints held part of the record already)."""
    task = state.get("task") or ("cnn" if "input_shape" in state else "lm")
    keys = CNN_KEYS if task == "cnn" else LM_KEYS
    return {k: state[k] for k in keys if k in state} | {"task": task}


def missing_keys(record: dict[str, Any]) -> list[str]:
    keys = CNN_KEYS if record.get("task") == "cnn" else LM_KEYS
    return [k for k in keys if k not in record]


def build_network(record: dict[str, Any]) -> nn.Module:
    """A freshly initialised network of the record's shape (load the weights into it)."""
    genotype = Genotype.from_dict(record["genotype"], "network record")
    if record["task"] == "cnn":
        from nasp.models.cnn import build_eval_model

        c, h, w = record["input_shape"]
        return build_eval_model(genotype, c, record["num_classes"], (h, w),
                                channels=record["channels"], layers=record["layers"],
                                auxiliary=record["auxiliary"])
    if record["task"] == "lm":
        from nasp.models.rnn import RNNModel

        return RNNModel(genotype, record["ntokens"], record["emsize"], record["nhid"],
                        **{k: record[k] for k in LM_DROPOUTS})
    raise NaspError(f"unknown task {record['task']!r} in a network record",
                    "the file was not written by nasp")
