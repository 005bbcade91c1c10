"""The names an option may take (and the defaults the library and the CLI share), in one place: the library
validates against them and the CLI offers them.

This module imports nothing, so that ``wsi-amf --help`` can list every choice without loading a model library.
"""

#: Inference engines: auto = OpenVINO (else ONNX Runtime) on the CPU, PyTorch on CUDA.
ENGINES = ("auto", "torch", "openvino", "onnx")
#: Points file formats (``--points-format``), and how messages call them.
POINTS_FORMATS: dict[str, str] = {
    "csv": "CSV",
    "geojson": "QuPath GeoJSON",
    "gc-json": "grand-challenge 'Multiple points' JSON",
    "sliderunner": "a SlideRunner/EXACT database",
    "midogpp": "MIDOG++ JSON",
}
#: Default bound of the patch cache in GB (``--cache-max-gb``): least recently used slides are evicted beyond it.
CACHE_MAX_GB = 50.0
#: Extra output files of a screening (``--export``): name -> file name suffix after the slide's stem.
EXPORT_SUFFIXES: dict[str, str] = {"gc-json": ".gc.json"}
#: Where a cohort runs (``--executor``).
EXECUTORS = ("local", "ray")
#: Labelled patch dataset formats (``--format``).
DATASET_FORMATS = ("midog25", "amibr", "folder", "csv")
#: Training recipes (``--recipe``).
RECIPE_NAMES = ("convnextv2", "efficientvit")
#: Cross-validation schemes (``--cv``).
CV_SCHEMES = ("kfold", "loco")
LOSSES = ("bce", "focal")
SAMPLERS = ("none", "balanced")
OPTIMIZERS = ("adam", "adamw")
#: How a bundle stores its members' weights (``--precision``; ``wsi_amf.precision``).
PRECISIONS = ("fp32", "fp16", "int8")
#: Training augmentations (``--augment``).
AUGMENTATIONS = ("transpose", "hflip", "vflip", "shift_scale_rotate", "stain", "colour")
