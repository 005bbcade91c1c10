"""Running a model bundle on patch images: labelled datasets (``evaluate``), patch files (``classify``) and
MIDOG 2025 track 2 stacks (``classify_stack``), all with one ``InferenceOptions``.

Modules: ``options`` (``InferenceOptions``), ``predict`` (batches through an ``Ensemble``), ``evaluate``,
``classify``, ``track2``, ``reports`` (metrics, prediction tables, ROC). Torch is imported only when a model
runs.
"""

from __future__ import annotations

from .classify import ClassifyResult, classify
from .evaluate import EvalResult, evaluate
from .options import InferenceOptions
from .track2 import StackResult, classify_stack

__all__ = ["ClassifyResult", "EvalResult", "InferenceOptions", "StackResult", "classify", "classify_stack", "evaluate"]
