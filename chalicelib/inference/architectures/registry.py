"""The networks a manifest may name, and what the rest of the code needs to know about each:
one ArchitectureSpec per network, exported by that network's own module (SPECS). Adding an
architecture is one new module and one line here.

Listing or checking names needs no torch: a network's module (which imports torch) is imported
only when its spec is asked for, so the onnxruntime path never imports torch, and the torch path
imports it only after inference.torch_import has put the EFS packages first on sys.path.
The same holds for HEADS, what the torch-free heatmap (inference.gradcam) needs to know of each
head: tests check it against each spec's gradcam_split and the network's own forward."""
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

# name -> the module whose SPECS holds it
_MODULES = {
    "densenet121": "chalicelib.inference.architectures.densenet",
    "resnet18": "chalicelib.inference.architectures.resnet",
    "resnet50": "chalicelib.inference.architectures.resnet",
}
NAMES: Tuple[str, ...] = tuple(_MODULES)


@dataclass(frozen=True)
class GradCamHead:
    """A head that, after Grad-CAM's target layer, is (ReLU,) global average pool and one
    linear layer: the class score's gradient with respect to that layer has a closed form."""
    layer: str   # the target layer's module path (ArchitectureSpec.gradcam_split's name)
    relu: bool   # the head applies a ReLU to the layer's output before pooling
    weight: str  # the linear layer's weight key in the safetensors file (outputs x channels)
    bias: str    # its bias key


HEADS: Dict[str, GradCamHead] = {
    # DenseNet.forward: relu(features(x)), pooled, classifier; features ends in norm5
    "densenet121": GradCamHead("features.norm5", True, "classifier.weight", "classifier.bias"),
    # ResNet.head: layer4's output is already a ReLU's, pooled, fc
    "resnet18": GradCamHead("layer4", False, "fc.weight", "fc.bias"),
    "resnet50": GradCamHead("layer4", False, "fc.weight", "fc.bias"),
}

# network -> (trunk, head, target layer name) with network(x) == head(trunk(x))
GradCamSplit = Callable[[Any], Tuple[Callable[[Any], Any], Callable[[Any], Any], str]]


@dataclass(frozen=True)
class ArchitectureSpec:
    name: str
    # (num_classes=, in_channels=) -> a module whose state_dict keys are torchvision's (and
    # torchxrayvision's) for this network
    build: Callable[..., Any]
    stem: str   # the first convolution's module path: its weight gives in_channels
    head: str   # the final Linear's module path: its weight gives num_classes
    # Grad-CAM's target layer: the tensor the head reads. The head must not work in place on
    # its input (autograd needs it intact); tests check network(x) == head(trunk(x)).
    gradcam_split: GradCamSplit

    @property
    def stem_weight(self) -> str:
        return f"{self.stem}.weight"

    @property
    def head_weight(self) -> str:
        return f"{self.head}.weight"


def is_known(name: object) -> bool:
    return name in _MODULES


def spec(name: str) -> ArchitectureSpec:
    """The network's spec (imports its module, hence torch). KeyError for an unknown name."""
    return importlib.import_module(_MODULES[name]).SPECS[name]
