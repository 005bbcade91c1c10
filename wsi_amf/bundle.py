"""Model bundles: a directory with ``bundle.json`` and one ``member-K.safetensors`` per ensemble member.

``bundle.json`` records everything inference needs to preprocess exactly as training did (architecture,
input size, centre-crop fraction, mean/std, training resolution, decision threshold, class names) plus
provenance and metrics. Weights are safetensors: nothing is ever unpickled.

``bundle.json`` also records each member file's SHA-256 (``member_sha256``, written by :func:`save_bundle`).
:func:`load_bundle` checks every member before any slide is read: it must parse as safetensors, match its
recorded SHA-256 (a bundle written before the hashes has none: nothing to check its bytes against), hold
only finite floating-point values (BatchNorm buffers included) and, when stored in int8, give every int8
tensor its scale (``wsi_amf.precision``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import BundleError, one_line
from .files import atomic_path, atomic_write_text
from .precision import decode, encode, layout_problem

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASS_NAMES = ("normal", "atypical")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: What a member of a mixed ensemble may set for itself (``BundleConfig.member_overrides``).
MEMBER_KEYS = ("architecture", "input_size", "crop_fraction", "mean", "std", "model_kwargs")
# Bits that make a floating-point value NaN or infinite (all exponent bits set), by safetensors dtype; the
# fp8 E4M3 format has no infinity and its NaN has every exponent and mantissa bit set.
_NON_FINITE_BITS = {"F64": ("<u8", 0x7FF0_0000_0000_0000), "F32": ("<u4", 0x7F80_0000), "F16": ("<u2", 0x7C00),
                    "BF16": ("<u2", 0x7F80), "F8_E5M2": ("u1", 0x7C), "F8_E4M3": ("u1", 0x7F)}


@dataclass(frozen=True)
class BundleConfig:
    """What ``bundle.json`` holds. The model outputs one logit: P(atypical) = sigmoid(logit)."""

    architecture: str
    members: tuple[str, ...]
    # SHA-256 (hex) of each member file, by file name; empty for a bundle written before them (not checked).
    member_sha256: Mapping[str, str] = field(default_factory=dict)
    input_size: int = 128
    patch_size: int = 128
    crop_fraction: float = 1.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    mpp: float = 0.25
    threshold: float = 0.5
    class_names: tuple[str, str] = CLASS_NAMES
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    # What the per-slide ratio estimators need (``quantify.Reference``): calibration map, out-of-fold figures,
    # stain range. Empty for a bundle trained before them: it screens with the uncorrected share of calls.
    quantification: Mapping[str, Any] = field(default_factory=dict)
    # An ensemble of several architectures (``training.combine``): by member file, what differs from the
    # values above (MEMBER_KEYS: architecture, preprocessing); and each member's 0-based fold, when a fold
    # has several members (absent: member k is fold k's). Both are left out of bundle.json when empty.
    member_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    member_folds: Mapping[str, int] = field(default_factory=dict)
    # The cross-validation: the 0-based fold of every training group (source slide) and what the groups are
    # (``PatchDataset.group_by``), from which the out-of-fold predictions are rebuilt. Left out when empty.
    fold_groups: Mapping[str, int] = field(default_factory=dict)
    fold_group_by: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("members", "mean", "std", "class_names"):
            data[key] = list(data[key])
        for key in ("member_overrides", "member_folds", "fold_groups", "fold_group_by"):
            if not data[key]:
                del data[key]
        return data

    def member(self, k: int) -> BundleConfig:
        """The configuration of member ``k`` alone: its file, its architecture and preprocessing."""
        name = self.members[k]
        given = dict(self.member_overrides.get(name, {}))
        for key in ("mean", "std"):
            if key in given:
                given[key] = _triple(given[key])
        return replace(self, members=(name,), member_sha256={name: self.member_sha256[name]} if name in self.member_sha256 else {},
                       member_overrides={}, member_folds={}, fold_groups={}, fold_group_by="", **given)

    def fold_of(self, k: int) -> int:
        """The 0-based fold whose validation figures member ``k`` never saw."""
        return int(self.member_folds.get(self.members[k], k))

    @property
    def architectures(self) -> tuple[str, ...]:
        """The members' architectures, each once, in member order."""
        return tuple(dict.fromkeys(self.member(k).architecture for k in range(len(self.members))))

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: Path) -> BundleConfig:
        if not isinstance(data, Mapping):
            raise BundleError(f"model bundle {source}: {BUNDLE_FILE} is not a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"model bundle {source}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        try:
            cfg = cls(
                architecture=str(data["architecture"]),
                members=tuple(str(m) for m in data["members"]),
                member_sha256=_object(data, "member_sha256"),
                input_size=int(data.get("input_size", 128)),
                patch_size=int(data.get("patch_size", 128)),
                crop_fraction=float(data.get("crop_fraction", 1.0)),
                mean=_triple(data.get("mean", IMAGENET_MEAN)),
                std=_triple(data.get("std", IMAGENET_STD)),
                mpp=float(data.get("mpp", 0.25)),
                threshold=float(data.get("threshold", 0.5)),
                class_names=tuple(str(c) for c in data.get("class_names", CLASS_NAMES)),  # type: ignore[arg-type]
                model_kwargs=_object(data, "model_kwargs"),
                provenance=_object(data, "provenance"),
                metrics=_object(data, "metrics"),
                quantification=_object(data, "quantification"),
                member_overrides={str(k): _object(_object(data, "member_overrides"), k)
                                  for k in _object(data, "member_overrides")},
                member_folds={str(k): int(v) for k, v in _object(data, "member_folds").items()},
                fold_groups=_fold_numbers(_object(data, "fold_groups")),
                fold_group_by=_text(data, "fold_group_by"),
            )
        except KeyError as exc:
            raise BundleError(f"model bundle {source}: {BUNDLE_FILE} lacks the key {exc.args[0]!r}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise BundleError(f"model bundle {source}: {BUNDLE_FILE} has a bad value ({one_line(exc)})") from None
        cfg.validate(source)
        return cfg

    def validate(self, source: Path | str = "bundle") -> None:
        problems = []
        if not self.members:
            problems.append("no members")
        if not 0.0 < self.crop_fraction <= 1.0:
            problems.append(f"crop_fraction {self.crop_fraction} is not in (0, 1]")
        if self.input_size < 8 or self.patch_size < 8:
            problems.append("input_size and patch_size must be at least 8")
        if not self.mpp > 0:
            problems.append(f"mpp {self.mpp} is not positive")
        if not 0.0 <= self.threshold <= 1.0:
            problems.append(f"threshold {self.threshold} is not in [0, 1]")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            problems.append("mean and std must be finite")
        elif any(s <= 0 for s in self.std):
            problems.append("std must be positive")
        if len(self.class_names) != 2:
            problems.append("class_names must name exactly two classes (normal, atypical)")
        for name in self.members:
            if Path(name).name != name or not name.endswith(".safetensors"):
                problems.append(f"member {name!r} is not a .safetensors file name inside the bundle")
        if self.member_sha256:
            problems += _hash_problems(self.members, self.member_sha256)
        for name, given in self.member_overrides.items():
            unknown = sorted(set(given) - set(MEMBER_KEYS))
            if name not in self.members or unknown:
                problems.append(f"member_overrides[{name!r}]: " + (f"unknown keys {unknown}" if unknown else "not a member"))
        if any(name not in self.members or fold < 0 for name, fold in self.member_folds.items()):
            problems.append("member_folds must give members 0-based fold numbers")
        problems += self._fold_problems()
        if problems:
            raise BundleError(f"model bundle {source}: " + "; ".join(problems))


    def _fold_problems(self) -> list[str]:
        """What is wrong with the recorded folds: every member's fold needs groups, every group a member."""
        if not self.fold_groups:
            return ["fold_group_by names no fold_groups"] if self.fold_group_by else []
        problems = [] if self.fold_group_by else ["fold_groups without fold_group_by (what the groups are)"]
        recorded = set(self.fold_groups.values())
        members = {self.fold_of(k) for k in range(len(self.members))}
        if min(recorded) < 0:
            problems.append("fold_groups must give groups 0-based fold numbers")
        elif recorded != members:
            problems.append(f"fold_groups gives folds {sorted(recorded)}, the members are of folds {sorted(members)}")
        return problems


def _hash_problems(members: tuple[str, ...], recorded: Mapping[str, Any]) -> list[str]:
    """What is wrong with a non-empty ``member_sha256``: it needs one 64-digit hex string per member, no more."""
    problems = [f"member_sha256 records no SHA-256 for member {m}" for m in members if m not in recorded]
    problems += [f"member_sha256 names {k!r}, which is not a member" for k in recorded if k not in members]
    problems += [f"member_sha256[{k!r}] is not a SHA-256 (64 hex digits)" for k, v in recorded.items()
                 if not (isinstance(v, str) and _SHA256.fullmatch(v.lower()))]
    return problems


def _triple(value: Iterable[Any]) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in value)
    if len(vals) != 3:
        raise ValueError("mean/std need three values")
    return vals[0], vals[1], vals[2]


@dataclass(frozen=True)
class ModelBundle:
    """A bundle on disk: its directory and parsed configuration."""

    path: Path
    config: BundleConfig

    @property
    def name(self) -> str:
        return str(self.config.provenance.get("name") or self.path.name)

    def member_paths(self) -> list[Path]:
        return [self.path / m for m in self.config.members]

    def describe(self) -> dict[str, Any]:
        """A short description for summaries (several architectures: joined by ``+``, the first member's
        input size and crop)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "architecture": "+".join(self.config.architectures),
            "members": len(self.config.members),
            "input_size": self.config.input_size,
            "patch_size": self.config.patch_size,
            "crop_fraction": self.config.crop_fraction,
            "mpp": self.config.mpp,
        }


def default_bundle_path() -> Path:
    """The default model shipped inside the package."""
    return Path(__file__).resolve().parent / "models" / "default"


def load_bundle(path: str | Path | None = None) -> ModelBundle:
    """Read and validate a bundle directory (the built-in default when ``path`` is None)."""
    root = Path(path) if path is not None else default_bundle_path()
    if path is None and not (root / BUNDLE_FILE).is_file():
        raise BundleError(f"the built-in default model is missing from the package ({root}); pass --model")
    if not root.exists():
        raise BundleError(f"model bundle {root}: no such directory")
    if root.is_file():
        if root.suffix in {".pt", ".pth", ".ckpt", ".pkl", ".bin"}:
            raise BundleError(
                f"model bundle {root}: a pickle checkpoint is not accepted; a bundle is a directory with "
                f"{BUNDLE_FILE} and member-K.safetensors files"
            )
        raise BundleError(f"model bundle {root}: is a file; a bundle is a directory with {BUNDLE_FILE}")
    meta = root / BUNDLE_FILE
    if not meta.is_file():
        raise BundleError(f"model bundle {root}: {BUNDLE_FILE} is missing")
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise BundleError(f"model bundle {root}: {BUNDLE_FILE} cannot be read ({one_line(exc)})") from None
    config = BundleConfig.from_json(data, source=root)
    for member in config.members:
        if not (root / member).is_file():
            what = "is not a file" if (root / member).exists() else "is missing"
            raise BundleError(f"model bundle {root}: member file {member} {what}")
    if not config.member_sha256:
        log.debug("model bundle %s records no SHA-256 for its members (written before wsi-amf recorded them): "
                  "their bytes are not checked", root)
    for member in config.members:
        check_member(root, member, config.member_sha256.get(member))
    return ModelBundle(path=root, config=config)


def check_member(root: Path, name: str, sha256: str | None) -> None:
    """BundleError unless member file ``name`` parses as safetensors, has the SHA-256 ``sha256`` (when one is
    recorded) and holds only finite floating-point values."""
    from safetensors import SafetensorError, deserialize

    try:
        data = (root / name).read_bytes()
        tensors = deserialize(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(root, name, exc) from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise BundleError(f"model bundle {root}: {name} does not match its recorded SHA-256 (the file is damaged or "
                          "was replaced); restore the bundle from its source, or retrain it")
    del data
    problem = layout_problem({key: (view["dtype"] == "I8", tuple(view["shape"])) for key, view in tensors})
    if problem is not None:
        raise BundleError(f"model bundle {root}: {name}: {problem}; this member cannot be used")
    for key, view in tensors:
        bits = _NON_FINITE_BITS.get(str(view["dtype"]))
        if bits is not None and _has_non_finite(view["data"], *bits):
            raise BundleError(f"model bundle {root}: {name}: tensor {key!r} holds NaN or infinite values (damaged "
                              "weights, or a training run that diverged); this member cannot be used")


def _has_non_finite(buffer: Any, dtype: str, mask: int) -> bool:
    """Whether any value of the little-endian float ``buffer`` has every bit of ``mask`` set."""
    import numpy as np

    raw = np.frombuffer(buffer, dtype=dtype)
    return bool(np.any((raw & raw.dtype.type(mask)) == mask))


def _unreadable(root: Path, name: str, exc: BaseException) -> BundleError:
    return BundleError(f"model bundle {root}: {name} is not a readable safetensors file ({one_line(exc)})")


def save_bundle(path: str | Path, config: BundleConfig, state_dicts: list[Mapping[str, Any]], *,
                precision: str = "fp32") -> ModelBundle:
    """Write a bundle: one safetensors file per member state dict (stored at ``precision``: ``fp32``, ``fp16``
    or ``int8``, see :mod:`wsi_amf.precision`), then ``bundle.json`` (atomically)."""
    from safetensors.torch import save_file

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    names = tuple(f"member-{k}.safetensors" for k in range(len(state_dicts)))
    for name, state in zip(names, state_dicts):
        tensors = encode(state, precision)
        with atomic_path(root / name) as tmp:
            save_file(tensors, str(tmp))
    digests = {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in names}
    config = replace(config, members=names, member_sha256=digests)
    config.validate(root)
    atomic_write_text(root / BUNDLE_FILE, json.dumps(config.to_json(), indent=2) + "\n")
    return ModelBundle(path=root, config=config)


def build_member(bundle: ModelBundle, index: int):  # -> torch.nn.Module
    """Create the timm architecture and load member ``index``'s weights (float32 at any stored precision, eval mode)."""
    import timm
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg = bundle.config.member(index)
    try:
        model = timm.create_model(cfg.architecture, pretrained=False, num_classes=1, **dict(cfg.model_kwargs))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise BundleError(f"model bundle {bundle.path}: cannot build architecture {cfg.architecture!r} ({exc})") from None
    path = bundle.path / cfg.members[0]
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(bundle.path, path.name, exc) from None
    try:
        weights = decode(state)
    except ValueError as exc:
        raise BundleError(f"model bundle {bundle.path}: {path.name}: {exc}") from None
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[:2])
        raise BundleError(
            f"model bundle {bundle.path}: {path.name} does not match architecture {cfg.architecture!r} ({detail})"
        ) from None
    model.eval()
    return model


def _fold_numbers(values: Mapping[str, Any]) -> dict[str, int]:
    """Group -> fold, each fold a JSON integer (TypeError otherwise)."""
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values.values()):
        raise TypeError("'fold_groups' must give every group an integer fold")
    return {str(k): int(v) for k, v in values.items()}


def _text(data: Mapping[str, Any], key: str) -> str:
    """``data[key]`` when it is a JSON string (absent: empty); TypeError otherwise."""
    value = data.get(key, "")
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string, not {type(value).__name__}")
    return value


def _object(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``data[key]`` when it is a JSON object (absent or null: empty); TypeError otherwise."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{key!r} must be an object, not {type(value).__name__}")
    return dict(value)
