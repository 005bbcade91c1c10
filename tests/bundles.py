"""Randomly initialised model bundles, for plumbing tests and benchmarks (their predictions mean nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wsi_amf.bundle import BundleConfig, ModelBundle, save_bundle


def random_bundle(path: str | Path, *, architecture: str = "convnextv2_atto", members: int = 1, seed: int = 0,
                  **config: Any) -> ModelBundle:
    """A randomly initialised bundle (for plumbing tests and benchmarks: its predictions mean nothing)."""
    import timm
    import torch

    states = []
    for k in range(members):
        torch.manual_seed(seed + k)
        states.append(timm.create_model(architecture, pretrained=False, num_classes=1).state_dict())
    provenance = {"name": f"random-{architecture}", "note": "randomly initialised: for testing plumbing only"}
    cfg = BundleConfig(architecture=architecture, members=("member-0.safetensors",), provenance=provenance, **config)
    return save_bundle(path, cfg, states)
