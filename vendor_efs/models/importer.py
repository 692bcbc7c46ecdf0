"""Turns a model you have into the store format (safetensors + manifest.json), offline.

    python -m vendor_efs.models import xrv  densenet121-res224-all.pt --name xrv-all --version 1
    python -m vendor_efs.models import torchvision chexnet.pth.tar --arch densenet121 \\
        --labels nih14 --name chexnet --version 1 [--thresholds thresholds.json] [--use]
    python -m vendor_efs.models import torchvision resnet50-res512-all.pt --arch resnet50 \\
        --labels xrv18 --size 512 --name xrv-resnet50 --version 1

`xrv` takes torchxrayvision's release files, which are whole pickled models: unpickling runs
code from the file, so it happens only here, on your machine, after a warning, and never at
serving time. `torchvision` takes a state_dict (torchvision DenseNet/ResNet layout, optionally
wrapped in {"state_dict": ...}, with `module.` or other nested prefixes and old-style
`norm.1` names) and is loaded with torch.load(weights_only=True), which refuses code.
The imported network is checked before it is written: against the original model's outputs
(xrv), or against torchvision's own architecture loaded with the same weights when torchvision
is installed (torchvision; otherwise the strict key-for-key load is the check).
"""
import argparse
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from chalicelib.inference.architectures.registry import NAMES, ArchitectureSpec, is_known, spec
from chalicelib.inference.backends import key_mismatch
from chalicelib.inference.preprocessing import RECIPES
from chalicelib.inference.store import point_current
from chalicelib.settings import LOCAL_EFS_ROOT
from vendor_efs.models.demo import XRV_LABELS
from vendor_efs.models.onnx_export import checked_graph
from vendor_efs.models.writer import write_model

NIH14_LABELS = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
]  # CheXNet's output order (the ChestX-ray14 paper's)
LABEL_SETS = {"nih14": NIH14_LABELS, "xrv18": XRV_LABELS}
TOLERANCE = 1e-5
_OLD_DENSENET_NAME = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


class ImportFailed(Exception):
    pass


def normalise_keys(state: Dict[str, Any], expected: List[str], head: str) -> Dict[str, Any]:
    """Maps a checkpoint's keys onto ours: unwraps {"state_dict": ...}, drops `module.` and
    any other prefix the whole checkpoint shares, renames old torchvision DenseNet names
    (`norm.1` -> `norm1`) and a Sequential(Linear, Sigmoid) head (`classifier.0` -> `classifier`,
    for the architecture's `head`)."""
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"^(module\.)+", "", key)
        match = _OLD_DENSENET_NAME.match(key)
        if match:
            key = match.group(1) + match.group(2)  # "norm" + "1.weight"
        renamed[key] = value
    prefix = _shared_prefix(list(renamed), expected)
    result = {}
    for key, value in renamed.items():
        key = key[len(prefix):]
        wrapped = re.match(rf"^{re.escape(head)}\.0\.(weight|bias)$", key)
        if wrapped and f"{head}.{wrapped.group(1)}" in expected:
            key = f"{head}.{wrapped.group(1)}"
        result[key] = value
    return result


def _shared_prefix(keys: List[str], expected: List[str]) -> str:
    """The prefix (e.g. "densenet121." or "model.") that turns the first key into one of ours
    and that every key has."""
    for candidate in expected:
        if keys[0].endswith(candidate):
            prefix = keys[0][:len(keys[0]) - len(candidate)]
            if all(key.startswith(prefix) for key in keys):
                return prefix
    return ""


def architecture_spec(architecture: str) -> ArchitectureSpec:
    if not is_known(architecture):
        raise ImportFailed(f"unknown architecture {architecture!r}; known: {', '.join(NAMES)}")
    return spec(architecture)


def build_network(architecture: str, state: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
    """Our network for these weights, with num_classes and in_channels read off the tensors."""
    network_spec = architecture_spec(architecture)
    build = network_spec.build
    expected = list(build(num_classes=1, in_channels=1).state_dict())
    state = normalise_keys(state, expected, network_spec.head)
    state.pop("op_threshs", None)
    try:
        shape = {"num_classes": state[network_spec.head_weight].shape[0],
                 "in_channels": state[network_spec.stem_weight].shape[1]}
    except KeyError as missing:
        raise ImportFailed(f"these weights are not a {architecture}: no {missing} "
                           f"(first keys: {list(state)[:3]})") from None
    network = build(**shape)
    missing, unexpected = key_mismatch(network, state)
    if missing or unexpected:
        raise ImportFailed(f"the weights do not fit {architecture}: missing {missing[:4]}, "
                           f"unexpected {unexpected[:4]}")
    network.load_state_dict(state, strict=True)
    return network.eval(), shape


def check_outputs(original: Any, ours: Any, in_channels: int, size: int,
                  apply_sigmoid: bool) -> float:
    """Largest difference between the original and our network on a fixed input."""
    import torch

    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(2, in_channels, size, size, generator=generator) * (
        500 if in_channels == 1 else 1)
    with torch.inference_mode():
        theirs = original(batch)
        if apply_sigmoid:
            theirs = torch.sigmoid(theirs)
        difference = float((torch.sigmoid(ours(batch)) - theirs).abs().max())
    if difference > TOLERANCE:
        raise ImportFailed(f"imported outputs differ from the original's by {difference:.2e} "
                           f"(> {TOLERANCE})")
    return difference


def from_xrv_pickle(path: Path) -> Tuple[str, Any, Dict[str, Any], List[str], Optional[list]]:
    """A torchxrayvision release file -> (architecture, network, shape, labels, thresholds)."""
    import torch

    warnings.warn(f"Unpickling {path}: this runs code from the file. Only import files you "
                  f"trust (torchxrayvision's own releases).", stacklevel=2)
    original = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(original, torch.nn.Module):
        raise ImportFailed(f"{path} holds a {type(original).__name__}, not a whole model: "
                           f"import it with the `torchvision` source instead")
    original.eval()
    # torchxrayvision's ResNet release is a plain state_dict: the `torchvision` source takes it.
    architecture = "densenet121"
    network, shape = build_network(architecture, dict(original.state_dict()))
    labels = [str(x) for x in getattr(original, "targets", getattr(original, "pathologies", []))]
    if len(labels) != shape["num_classes"]:
        raise ImportFailed(f"{path} names {len(labels)} labels for {shape['num_classes']} outputs")
    thresholds = getattr(original, "op_threshs", None)
    # torchxrayvision's forward applies op_norm when thresholds are set; compare raw sigmoids.
    original.op_threshs = None
    original.apply_sigmoid = True
    size = int(getattr(original, "input_resolution", 224))
    if hasattr(original, "input_resolution"):
        del original.input_resolution  # no silent resize inside the reference forward
    check_outputs(original, network, shape["in_channels"], size, apply_sigmoid=False)
    return architecture, network, {**shape, "size": size}, labels, (
        None if thresholds is None else [float(t) for t in thresholds])


def from_state_dict(path: Path, architecture: str) -> Tuple[Any, Dict[str, Any]]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ImportFailed(f"{path} is not a plain state_dict (torch.load with weights_only "
                           f"refused it: {type(error).__name__}); if it is a whole pickled "
                           f"model you trust, use the `xrv` source") from None
    network, shape = build_network(architecture, state)
    reference = torchvision_reference(architecture, shape, network.state_dict())
    if reference is None:
        print("torchvision is not installed: checked by the strict key-for-key load only")
    else:
        check_outputs(reference, network, shape["in_channels"], 224, apply_sigmoid=True)
    return network, shape


def torchvision_reference(architecture: str, shape: Dict[str, Any], state: Dict[str, Any]) -> Any:
    """torchvision's own network with these weights (a 1-channel stem swapped in the way
    torchxrayvision does it), or None without torchvision."""
    try:
        import torch
        import torchvision
    except ImportError:
        return None
    model = getattr(torchvision.models, architecture)(num_classes=shape["num_classes"])
    if shape["in_channels"] != 3:
        parent, _, name = architecture_spec(architecture).stem.rpartition(".")
        stem = torch.nn.Conv2d(shape["in_channels"], 64, 7, 2, 3, bias=False)
        setattr(model.get_submodule(parent), name, stem)
    model.load_state_dict(state, strict=True)
    return model.eval()


def threshold_map(labels: List[str], values: Optional[list], default: float) -> Dict[str, float]:
    """Per-label thresholds; NaN (torchxrayvision's mark for an untrained output) -> unnamed."""
    result = {}
    for index, label in enumerate(labels):
        if not label:
            continue
        value = default if values is None else values[index]
        if value != value:  # NaN
            continue
        result[label] = float(value)
    return result


def write(args: argparse.Namespace, architecture: str, network: Any, shape: Dict[str, Any],
          labels: List[str], thresholds: Dict[str, float], preprocessing: Dict[str, Any],
          source: str) -> Path:
    from safetensors.torch import save

    labels = [label if label in thresholds else "" for label in labels]
    manifest = {
        "name": args.name, "version": args.version, "trained": True,
        "architecture": {"name": architecture, "in_channels": shape["in_channels"]},
        "labels": labels, "thresholds": thresholds,
        "input": {"channels": shape["in_channels"], "size": shape["size"]},
        "preprocessing": preprocessing,
        "weights": {"file": "model.safetensors"},
        "provenance": {"source": source, "imported_from": Path(args.source).name,
                       "imported_with": "vendor_efs/models/importer.py"},
    }
    weights = save({k: v.contiguous() for k, v in network.state_dict().items()})
    graph, manifest["onnx"] = checked_graph(network, architecture, shape["in_channels"],
                                            shape["size"], weights)
    target = write_model(args.store, manifest, weights, graph)
    if args.use:
        point_current(args.store, target)
    return target


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vendor_efs.models import",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["xrv", "torchvision"])
    parser.add_argument("source", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--arch", default="densenet121", help="torchvision: the architecture")
    parser.add_argument("--labels", default="nih14",
                        help="torchvision: nih14, xrv18 or a JSON file listing output names")
    parser.add_argument("--size", type=int, default=224, help="torchvision: input size")
    parser.add_argument("--thresholds", type=Path,
                        help="JSON {label: threshold}; default: the model's own, else 0.5")
    parser.add_argument("--store", type=Path, default=LOCAL_EFS_ROOT / "models")
    parser.add_argument("--use", action="store_true", help="make it the served model")
    args = parser.parse_args(argv)
    try:
        target = run(args)
    except ImportFailed as error:
        sys.exit(f"import failed: {error}")
    print(f"imported {args.name} {args.version} -> {target}"
          + (" (now current)" if args.use else ""))


def run(args: argparse.Namespace) -> Path:
    given = json.loads(args.thresholds.read_text()) if args.thresholds else None
    if args.kind == "xrv":
        architecture, network, shape, labels, own = from_xrv_pickle(args.source)
        thresholds = threshold_map(labels, own, 0.5)
        preprocessing = RECIPES["xrv"].description
        source = "torchxrayvision release weights (whole pickled model, unpickled at import)"
    else:
        network, shape = from_state_dict(args.source, args.arch)
        architecture, shape = args.arch, {**shape, "size": args.size}
        labels = (LABEL_SETS[args.labels] if args.labels in LABEL_SETS
                  else json.loads(Path(args.labels).read_text()))
        if len(labels) != shape["num_classes"]:
            raise ImportFailed(f"{len(labels)} labels for {shape['num_classes']} outputs")
        thresholds = threshold_map(labels, None, 0.5)
        recipe = "imagenet" if shape["in_channels"] == 3 else "xrv"
        preprocessing = RECIPES[recipe].description
        source = "torchvision-layout state_dict"
    if given is not None:
        unknown = set(given) - set(thresholds)
        if unknown:
            raise ImportFailed(f"thresholds for unknown labels: {sorted(unknown)}")
        thresholds.update({k: float(v) for k, v in given.items()})
    return write(args, architecture, network, shape, labels, thresholds, preprocessing, source)


if __name__ == "__main__":
    main()
