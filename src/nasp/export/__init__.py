"""Getting a trained network out of a run: ``load`` it with its preprocessing, or export it
as ONNX, a ``torch.export`` program, or safetensors + JSON (see ``formats``)."""

from nasp.export.formats import FORMATS, ExportResult, export_run
from nasp.export.load import ImagePreprocessing, LoadedRun, Vocabulary, load

__all__ = ["FORMATS", "ExportResult", "ImagePreprocessing", "LoadedRun", "Vocabulary",
           "export_run", "load"]
