"""The networks a manifest may name, and what the rest of the code needs to know about each:
one ArchitectureSpec per network, exported by that network's own module (SPECS). Adding an
architecture is one new module and one line here.

Listing or checking names needs no torch: a network's module (which imports torch) is imported
only when its spec is asked for, so the onnxruntime path never imports torch, and the torch path
imports it only after inference.torch_import has put the EFS packages first on sys.path."""
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Tuple

# name -> the module whose SPECS holds it
_MODULES = {
    "densenet121": "chalicelib.inference.architectures.densenet",
    "resnet18": "chalicelib.inference.architectures.resnet",
    "resnet50": "chalicelib.inference.architectures.resnet",
}
NAMES: Tuple[str, ...] = tuple(_MODULES)

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
