"""``InferenceOptions``: how a bundle is run on patch images (``evaluate``, ``classify``, ``classify-stack``).

Every value is checked when the options are made (``OptionError`` naming the CLI option), before any data
or model is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..bundle import ModelBundle, load_bundle
from ..choices import ENGINES
from ..ensemble import Ensemble, open_ensemble
from ..errors import OptionError
from ..options import check_model_run


@dataclass(frozen=True)
class InferenceOptions:
    """The model and how to run it; ``threshold`` None means the bundle's own."""

    model: str | Path | ModelBundle | None = None  # a bundle directory; None: the built-in model
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    engine: str = "auto"  # one of ENGINES
    batch_size: int = 64  # patches per model batch
    tta: bool = False  # average the 8 flips / 90-degree rotations of every patch
    threshold: float | None = None  # decision threshold on P(atypical)

    def __post_init__(self) -> None:
        check_model_run(self.batch_size, self.threshold)
        if self.engine not in ENGINES:
            raise OptionError(f"--engine {self.engine!r}: expected one of {', '.join(ENGINES)}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise OptionError(f"--device {self.device!r}: expected auto, cpu, cuda or cuda:N")

    def load_bundle(self) -> ModelBundle:
        """The bundle ``model`` names (loaded and checked)."""
        return self.model if isinstance(self.model, ModelBundle) else load_bundle(self.model)

    def open(self, bundle: ModelBundle | None = None) -> Ensemble:
        """The ensemble of ``bundle`` (default: ``model``) on this device and engine."""
        return open_ensemble(self.model if bundle is None else bundle, device=self.device, engine=self.engine,
                             tta=self.tta)

    def threshold_for(self, bundle: ModelBundle) -> float:
        """The decision threshold: the one given, else the bundle's."""
        return bundle.config.threshold if self.threshold is None else float(self.threshold)
