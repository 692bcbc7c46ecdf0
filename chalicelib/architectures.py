"""The networks a manifest may name. Each builder takes num_classes and in_channels and returns
a module whose state_dict keys are torchvision's (and torchxrayvision's) for that network."""
from typing import Any, Callable, Dict

from chalicelib.densenet import DenseNet
from chalicelib.resnet import resnet18, resnet50

ARCHITECTURES: Dict[str, Callable[..., Any]] = {
    "densenet121": DenseNet,
    "resnet18": resnet18,
    "resnet50": resnet50,
}
