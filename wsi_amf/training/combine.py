"""Mixed ensembles: several k-fold bundles trained on the same data with the same folds (``fold_groups``), as
one bundle.

Member j of each source bundle is fold j's model, so the combined bundle has several members per fold (one
per source), each with its own architecture and preprocessing (``BundleConfig.member_overrides``) and its
fold (``member_folds``). A figure's out-of-fold score is the mean of its fold's members (``oof.recorded_oof``
on the training data, which must be the sources' own: checked by fingerprint); the threshold (best balanced
accuracy), the out-of-fold metrics (``metrics.json``, ``oof_predictions.csv`` beside the bundle) and the
quantification entry are computed from it, as ``train`` does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ..bundle import BUNDLE_FILE, MEMBER_KEYS, BundleConfig, ModelBundle, load_bundle
from ..datasets import PatchDataset, load_dataset
from ..errors import OptionError
from ..files import atomic_write_text
from ..inference.reports import headline, json_ready, metrics_report, write_json, write_predictions
from ..stats import best_balanced_accuracy_threshold
from .calibrate import quantification_block
from .oof import recorded_oof


def combine(bundles: Sequence[str | Path | ModelBundle], data: str | Path | PatchDataset, *, out: str | Path,
            name: str | None = None, format: str | None = None, group_column: str | None = None,
            domain_column: str | None = None, images: str | Path | None = None, device: str = "cpu",
            engine: str = "auto", workers: int = 4, quiet: bool = False, force: bool = False) -> ModelBundle:
    """Write the bundle made of every member of ``bundles`` (trained on ``data`` with the same folds) to ``out``."""
    sources = [b if isinstance(b, ModelBundle) else load_bundle(b) for b in bundles]
    if len(sources) < 2:
        raise OptionError("combine needs at least two bundles")
    _check_compatible(sources)
    target = Path(out)
    if (target / BUNDLE_FILE).exists() and not force:
        raise OptionError(f"{target} already holds a bundle; pass --force to overwrite it")
    if any(target.resolve() == s.path.resolve() for s in sources):
        raise OptionError(f"--out {target}: is one of the bundles combined")
    ds = data if isinstance(data, PatchDataset) else load_dataset(
        data, format=format, group_column=group_column, domain_column=domain_column, images=images,
        patch_size=sources[0].config.patch_size, workers=workers, quiet=quiet,
    )
    target.mkdir(parents=True, exist_ok=True)
    config = _copy_members(sources, target, name=name or target.resolve().name)
    oof = recorded_oof(ModelBundle(path=target, config=config), ds, device=device, engine=engine)
    threshold = best_balanced_accuracy_threshold(ds.labels, oof.p)
    report = metrics_report(ds.labels, oof.p, threshold, domains=ds.domains)
    metrics = json_ready({"cv_oof": headline(report), "cv_oof_at_0.5": report["at_0.5"],
                          "cv_oof_at_otsu": report["at_otsu"]})
    provenance = {**config.provenance, "data": {**(config.provenance["data"] or {}), "patch_digests": ds.patch_digests()}}
    config = replace(config, threshold=threshold, metrics=metrics, provenance=provenance,
                     quantification=quantification_block(ds, oof.p, oof.folds, threshold))
    write_json(target / "metrics.json", {"combined_from": [str(s.path) for s in sources], "threshold": threshold,
                                         **report})
    write_predictions(target / "oof_predictions.csv", paths=ds.paths, p=oof.p, threshold=threshold, labels=ds.labels,
                      columns={"fold": oof.folds.tolist(), "group": ds.groups.tolist(),
                               **{k: v.tolist() for k, v in ds.domains.items()}})
    atomic_write_text(target / BUNDLE_FILE, json.dumps(config.to_json(), indent=2) + "\n")
    return ModelBundle(path=target, config=config)


def _copy_members(sources: list[ModelBundle], target: Path, *, name: str) -> BundleConfig:
    """Copy every member of ``sources`` into ``target``; the combined configuration (before its metrics)."""
    first = sources[0].config
    members: list[str] = []
    digests: dict[str, str] = {}
    overrides: dict[str, dict[str, Any]] = {}
    folds: dict[str, int] = {}
    for source in sources:
        for k in range(len(source.config.members)):
            member = source.config.member(k)
            new = f"member-{len(members)}.safetensors"
            shutil.copyfile(source.path / member.members[0], target / new)
            members.append(new)
            digests[new] = hashlib.sha256((target / new).read_bytes()).hexdigest()
            own = {key: _plain(getattr(member, key)) for key in MEMBER_KEYS
                   if _plain(getattr(member, key)) != _plain(getattr(first, key))}
            if own:
                overrides[new] = own
            folds[new] = source.config.fold_of(k)
    provenance = {
        "name": name,
        "combined_from": [{"name": s.name, "path": str(s.path), **s.describe(),
                           "weights": s.config.provenance.get("weights"),
                           "hyperparameters": s.config.provenance.get("hyperparameters")} for s in sources],
        "data": first.provenance.get("data"),
        "seeds": {"split": (first.provenance.get("seeds") or {}).get("split")},
        "cv": first.provenance.get("cv"),
        "threshold_method": first.provenance.get("threshold_method"),
    }
    config = replace(first, members=tuple(members), member_sha256=digests, member_overrides=overrides,
                     member_folds=folds, provenance=provenance, metrics={}, quantification={})
    config.validate(target)
    return config


def _check_compatible(sources: list[ModelBundle]) -> None:
    """OptionError unless the bundles read the same patches and were cross-validated on the same folds."""
    first = sources[0]
    for other in sources[1:]:
        a, b = first.config, other.config
        problems = []
        if (a.patch_size, a.mpp) != (b.patch_size, b.mpp):
            problems.append(f"patches of {a.patch_size} px at {a.mpp} um/px against {b.patch_size} px at {b.mpp}")
        fa, fb = ((c.provenance.get("data") or {}).get("fingerprint") for c in (a, b))
        if fa is None or fa != fb:
            problems.append("not trained on the same data (provenance.data.fingerprint)")
        if not (a.fold_groups and b.fold_groups):
            problems.append("bundle.json records no folds (fold_groups)")
        elif (a.fold_groups, a.fold_group_by) != (b.fold_groups, b.fold_group_by):
            problems.append("not cross-validated on the same folds (the recorded fold of each group)")
        if problems:
            raise OptionError(f"bundles {first.path} and {other.path} cannot be combined: " + "; ".join(problems))


def _plain(value: Any) -> Any:
    """A configuration value as JSON holds it (tuples as lists, mappings as dicts)."""
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "items"):
        return dict(value)
    return value
