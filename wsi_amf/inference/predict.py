"""P(atypical) of patches in memory, batch by batch, with a progress bar."""

from __future__ import annotations

import numpy as np

from ..ensemble import Ensemble


def predict_patches(ensemble: Ensemble, patches: np.ndarray, *, batch_size: int = 64, quiet: bool = True,
                    desc: str = "classifying") -> np.ndarray:
    """P(atypical) of ``uint8 [N, S, S, 3]`` patches, in batches, with a progress bar."""
    from tqdm.auto import tqdm

    out = np.empty(len(patches), dtype=np.float64)
    with tqdm(total=len(patches), desc=desc, unit="patch", disable=quiet, leave=False) as bar:
        for start in range(0, len(patches), batch_size):
            chunk = patches[start : start + batch_size]
            out[start : start + len(chunk)] = ensemble.predict(chunk)
            bar.update(len(chunk))
    return out
