"""A labelled patch dataset in memory: pixels, labels, source groups and domain columns, and its digests."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class PatchDataset:
    """Patches, labels (1 = atypical), source groups and domain columns of a labelled dataset."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    labels: np.ndarray  # int64 [N]
    groups: np.ndarray  # str [N]
    paths: tuple[str, ...]
    domains: Mapping[str, np.ndarray] = field(default_factory=dict)  # column -> str [N]
    format: str = "csv"
    source: str = ""
    group_by: str = ""  # what ``groups`` are, e.g. "filename" or "dataset/slide"

    def __len__(self) -> int:
        return int(self.labels.size)

    @property
    def n_atypical(self) -> int:
        return int(self.labels.sum())

    def subset(self, index: np.ndarray) -> PatchDataset:
        idx = np.asarray(index, dtype=np.int64)
        return PatchDataset(
            images=self.images[idx],
            labels=self.labels[idx],
            groups=self.groups[idx],
            paths=tuple(self.paths[i] for i in idx),
            domains={k: v[idx] for k, v in self.domains.items()},
            format=self.format,
            source=self.source,
            group_by=self.group_by,
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for provenance."""
        return {
            "source": self.source,
            "format": self.format,
            "n": len(self),
            "n_atypical": self.n_atypical,
            "n_normal": len(self) - self.n_atypical,
            "n_groups": int(np.unique(self.groups).size),
            "grouped_by": self.group_by,
            "patch_size": int(self.images.shape[1]) if self.images.ndim == 4 else None,
            "domains": {k: sorted({str(x) for x in v}) for k, v in self.domains.items()},
            "fingerprint": self.fingerprint(),
            "patch_digests": self.patch_digests(),
        }

    def patch_digests(self) -> str:
        """An 8-byte BLAKE2b digest of each patch's pixels, concatenated and base64-encoded (a bundle records its
        training patches' so that ``evaluate`` can tell in-sample figures)."""
        return base64.b64encode(b"".join(patch_digest(im) for im in self.images)).decode("ascii")

    def fingerprint(self) -> str:
        """A hash of the pixels, labels and groups (changes when the data does)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(np.ascontiguousarray(self.images).data)
        h.update(self.labels.astype(np.int64).tobytes())
        h.update("\n".join(map(str, self.groups)).encode())
        return h.hexdigest()


def patch_digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=8).digest()


def training_overlap(provenance: Mapping[str, Any], data: PatchDataset) -> int | None:
    """How many patches of ``data`` the bundle with this ``provenance`` was trained on (None: not recorded)."""
    recorded = (provenance.get("data") or {}).get("patch_digests")
    if not recorded:
        return None
    raw = base64.b64decode(recorded)
    trained = {raw[i:i + 8] for i in range(0, len(raw), 8)}
    return sum(patch_digest(im) in trained for im in data.images)
