"""Writes the default model into a local model store: a DenseNet-121 with torchxrayvision's
architecture and 18 labels, and seeded random weights marked untrained everywhere they show.

    python -m vendor_efs.models demo [--store efs-local/models]

Safe to run again: an existing demo version is kept as it is and made current.
"""
import argparse
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from chalicelib.inference.preprocessing import RECIPES
from chalicelib.inference.store import ManifestError, point_current, read_manifest
from chalicelib.settings import LOCAL_EFS_ROOT
from vendor_efs.models.writer import write_model

if TYPE_CHECKING:
    import torch

# 3: faster ONNX graph; 4: the graph also outputs the Grad-CAM feature map (same weights)
NAME, VERSION, SEED = "densenet121-xrv-untrained-demo", "4", 0
# torchxrayvision's 18 pathologies, in its output order.
XRV_LABELS = [
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema",
    "Fibrosis", "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass",
    "Hernia", "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum",
]
XRV_INPUT = {"channels": 1, "size": 224}


def demo_manifest() -> dict:
    return {
        "name": NAME,
        "version": VERSION,
        "trained": False,
        "architecture": {"name": "densenet121", "in_channels": 1},
        "labels": XRV_LABELS,
        "thresholds": {label: 0.5 for label in XRV_LABELS},
        "input": XRV_INPUT,
        "preprocessing": RECIPES["xrv"].description,
        "weights": {"file": "model.safetensors"},
        "provenance": {
            "source": "vendor_efs/models/demo.py: torch.manual_seed(0), torchvision's DenseNet "
                      "initialisation, batch-norm statistics from seeded synthetic noise; never "
                      "trained on any data",
            "license": "same as this project",
            "intended_use": "a placeholder that exercises the whole serving path; not a "
                            "diagnostic model",
        },
    }


def demo_network() -> "torch.nn.Module":
    """The seeded, untrained DenseNet-121 (torchxrayvision layout), in eval mode."""
    import torch

    from chalicelib.inference.architectures.densenet import DenseNet

    torch.manual_seed(SEED)
    network = DenseNet(num_classes=len(XRV_LABELS), in_channels=1)
    network.reset_parameters()
    # Freshly initialised batch-norm statistics (mean 0, variance 1) let activations grow
    # through 120 layers until every output saturates at 0 or 1. Estimate them instead on
    # seeded synthetic images (smooth noise over the input range), so that the demo's
    # probabilities are moderate and respond to the image. No real data is involved.
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration batches
    network.train()
    with torch.no_grad():
        for _ in range(4):
            noise = torch.rand(8, 1, 14, 14) * 2048 - 1024
            network(torch.nn.functional.interpolate(noise, size=224, mode="bilinear"))
    return network.eval()


def demo_files() -> tuple:
    """(manifest, safetensors weights, ONNX graph checked against torch)."""
    from safetensors.torch import save

    from vendor_efs.models.onnx_export import checked_graph

    network = demo_network()
    weights = save({k: v.contiguous() for k, v in network.state_dict().items()})
    graph, onnx_entry = checked_graph(network, "densenet121", XRV_INPUT["channels"],
                                      XRV_INPUT["size"], weights)
    return {**demo_manifest(), "onnx": onnx_entry}, weights, graph


def install_demo(models_root: Path) -> Path:
    target = models_root / NAME / VERSION
    try:
        read_manifest(target)
    except ManifestError:
        target = write_model(models_root, *demo_files())
    point_current(models_root, target)
    return target


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vendor_efs.models demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=LOCAL_EFS_ROOT / "models",
                        help="the models folder of the store (default: %(default)s)")
    args = parser.parse_args(argv)
    target = install_demo(args.store)
    print(f"demo model ready: {target} (current -> {target.relative_to(args.store)})")


if __name__ == "__main__":
    main()
