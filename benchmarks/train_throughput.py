"""Training and evaluation throughput (images/s) of the recipes' models on this machine.

    python benchmarks/train_throughput.py            # a few batches per model
    python benchmarks/train_throughput.py --quick    # one timed batch, small batches, no ONNX column

Rows: the ``convnextv2`` recipe's model (convnextv2_base, 60 % crop -> 128 px), the ``efficientvit``
recipe's (efficientvit_l2 at 256 px, stain augmentation), the former built-in model (``regnetx_002`` from
scratch, 60 % crop -> 96 px, batch 64), and the built-in default model (EfficientNet-Lite0 fine-tuned from its
ImageNet weights, ``--pretrained-file efficientnet-lite0``) with the settings it was trained with (read from
its ``bundle.json``). Training =
the real training step (augmentation on the device, Preprocess, forward, backward, clipping, optimiser;
autocast + GradScaler on CUDA). Evaluation = one member in eval mode under ``torch.inference_mode``
(eager PyTorch; autocast on CUDA), and, without ``--quick``, the ``Ensemble`` engine that ``evaluate``
uses (``auto``: OpenVINO on the CPU) for a one-member bundle. Random weights and synthetic patches: the speed
does not depend on them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass

import numpy as np

RECIPE_ROWS = (
    ("convnextv2 recipe", "convnextv2", {}),
    ("efficientvit recipe", "efficientvit", {}),
    # the built-in model until wsi-amf 0.2 (5 x regnetx_002 from scratch); weights do not change the speed
    ("former built-in (regnetx_002)", "convnextv2", {"arch": "regnetx_002", "img_size": 96, "crop": 0.6, "batch_size": 64,
                                                     "optimizer": "adamw", "loss": "bce", "sampler": "none",
                                                     "augment": ("transpose", "hflip", "vflip", "shift_scale_rotate",
                                                                 "stain"), "stain_alpha": 0.1}),
)
# Hyper-parameters of the built-in model that change the cost of a training step.
_COST_KEYS = ("arch", "img_size", "crop", "batch_size", "optimizer", "loss", "sampler", "augment", "stain_alpha",
              "stain_beta")


def default_model_row() -> tuple[str, str, dict]:
    """(label, recipe, overrides) reproducing the built-in model's training settings from its bundle.json."""
    from wsi_amf.bundle import load_bundle

    hp = load_bundle(None).config.provenance.get("hyperparameters", {})
    overrides = {k: (tuple(hp[k]) if k == "augment" else hp[k]) for k in _COST_KEYS if k in hp}
    return "built-in model", hp.get("name", "convnextv2"), overrides


@dataclass(frozen=True)
class Row:
    label: str
    arch: str
    size: str
    batch: int
    train_ips: float
    eval_ips: float
    engine_ips: float | None
    engine: str | None


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(label: str, recipe_name: str, overrides: dict, *, device: str, batches: int, batch: int | None,
            engine: bool) -> Row:
    import torch

    from wsi_amf.training import RecipeChanges, resolve_recipe, trainer

    rec = resolve_recipe(recipe_name, RecipeChanges.from_mapping({**overrides, **({"batch_size": batch} if batch else {})}))
    bs = rec.batch_size
    rng = np.random.default_rng(0)
    patches = torch.from_numpy(rng.integers(0, 256, (bs, rec.patch_size, rec.patch_size, 3), dtype=np.uint8))
    labels = rng.integers(0, 2, bs)
    torch.manual_seed(0)
    model = trainer.build_model(rec).to(device)
    if device.startswith("cuda"):
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt = trainer.make_optimizer(model, rec)
    scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda") and rec.amp)
    gen = torch.Generator().manual_seed(0)
    model.train()
    trainer.train_step(model, opt, scaler, patches, labels, recipe=rec, gen=gen, device=device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        trainer.train_step(model, opt, scaler, patches, labels, recipe=rec, gen=gen, device=device)
    _sync(device)
    train_ips = batches * bs / (time.perf_counter() - t0)

    images = patches.numpy()
    index = np.arange(bs)
    trainer.predict_logits(model, images, index, rec, device=device, batch_size=bs)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        trainer.predict_logits(model, images, index, rec, device=device, batch_size=bs)
    _sync(device)
    eval_ips = batches * bs / (time.perf_counter() - t0)

    engine_ips = engine_name = None
    if engine:
        engine_ips, engine_name = _engine_ips(rec, model, images, device=device, batches=batches)
    size = f"{rec.img_size} px" + (f" (crop {rec.crop:g})" if rec.crop < 1 else "")
    return Row(label, rec.arch.split(".")[0], size, bs, train_ips, eval_ips, engine_ips, engine_name)


def _engine_ips(rec, model, images: np.ndarray, *, device: str, batches: int) -> tuple[float, str]:
    from wsi_amf.bundle import BundleConfig, load_bundle, save_bundle
    from wsi_amf.ensemble import Ensemble

    with tempfile.TemporaryDirectory() as tmp:
        cfg = BundleConfig(architecture=rec.arch, members=(), input_size=rec.img_size, patch_size=rec.patch_size,
                           crop_fraction=rec.crop, mean=rec.mean, std=rec.std)
        save_bundle(tmp, cfg, [model.state_dict()])
        ens = Ensemble(load_bundle(tmp), device=device)
        ens.predict(images)  # warm-up
        t0 = time.perf_counter()
        for _ in range(batches):
            ens.predict(images)
        return batches * len(images) / (time.perf_counter() - t0), ens.info.engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one timed batch of at most 16 patches per model, no engine column")
    ap.add_argument("--batches", type=int, default=None, help="timed batches per model (default 2, 1 with --quick)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the recipe's (16 with --quick)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()

    import torch

    from wsi_amf.ensemble import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    batches = args.batches or (1 if args.quick else 2)
    batch = args.batch_size or (16 if args.quick else None)
    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({where}); torch {torch.__version__}; {batches} timed batch(es) after one warm-up")
    rows = []
    for label, recipe_name, overrides in (*RECIPE_ROWS, default_model_row()):
        row = measure(label, recipe_name, overrides, device=device, batches=batches, batch=batch, engine=not args.quick)
        rows.append(row)
        print(f"  measured {row.label}", flush=True)
    header = (f"{'model':24s} {'architecture':18s} {'input':18s} {'batch':>5s} {'train img/s':>12s} {'eval img/s':>11s} "
              f"{'engine img/s':>15s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        eng = f"{r.engine_ips:.1f} ({r.engine})" if r.engine_ips is not None else "-"
        print(f"{r.label:24s} {r.arch:18s} {r.size:18s} {r.batch:5d} {r.train_ips:12.1f} {r.eval_ips:11.1f} {eng:>15s}")


if __name__ == "__main__":
    main()
