"""``nasp export``: the trained network of a ``nasp train`` run as a file to deploy.

``--format onnx`` (dynamic batch; needs ``pip install 'nasp[export]'``), ``pt2`` (a
``torch.export`` program) or ``safetensors`` (weights + a JSON of genotype and config beside
them; the only format for language models). Without ``--format`` the suffix of ``-o`` decides.
Every export is run once more and compared with PyTorch's outputs before the command
succeeds (see ``nasp.export.formats`` for the tolerance).
"""

from __future__ import annotations

import argparse

from nasp.cli.options import path_arg, path_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", type=path_text, help="a `nasp train` run folder")
    parser.add_argument("-o", "--out", type=path_arg, required=True,
                        help="output file (.onnx, .pt2 or .safetensors)")
    parser.add_argument("--format", choices=("onnx", "pt2", "safetensors"), default=None,
                        help="file format (default: from the suffix of -o)")
    parser.add_argument("--last", action="store_true",
                        help="export the last epoch's weights (checkpoint.pt) instead of the "
                        "best validation epoch's (best.pt)")


def run(args: argparse.Namespace) -> int:
    from nasp.export import export_run

    result = export_run(args.run, args.out, fmt=args.format, last=args.last)
    print(result.summary())
    return 0
