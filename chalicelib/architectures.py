"""The networks a manifest may name. Each builder takes num_classes and in_channels and returns
a module whose state_dict keys are torchvision's (and torchxrayvision's) for that network.

Listing or checking names needs no torch: a builder's module (which imports torch) is imported
only when the builder is asked for, so the onnxruntime path never imports torch, and the torch
path imports it only after chalicelib.runtime has put the EFS packages first on sys.path."""
import importlib
from typing import Any, Callable, Iterator, Mapping

_WHERE = {
    "densenet121": ("chalicelib.densenet", "DenseNet"),
    "resnet18": ("chalicelib.resnet", "resnet18"),
    "resnet50": ("chalicelib.resnet", "resnet50"),
}


class _Builders(Mapping):
    def __getitem__(self, name: str) -> Callable[..., Any]:
        module, attribute = _WHERE[name]
        return getattr(importlib.import_module(module), attribute)

    def __contains__(self, name: object) -> bool:  # Mapping's default would import the module
        return name in _WHERE

    def __iter__(self) -> Iterator[str]:
        return iter(_WHERE)

    def __len__(self) -> int:
        return len(_WHERE)


ARCHITECTURES: Mapping[str, Callable[..., Any]] = _Builders()
