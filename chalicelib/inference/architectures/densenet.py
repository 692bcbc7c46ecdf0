"""DenseNet-121 with exactly torchxrayvision's module layout, defined without torchvision.

Why not torchvision: its CPU-less wheels do not import beside the CPU torch we ship on EFS, and
`import torchvision` alone costs seconds of cold start. The parameter names here are those of
torchxrayvision's (and torchvision's) DenseNet, so their state_dicts load key for key.
"""
from collections import OrderedDict
from typing import Any, Callable, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from chalicelib.inference.architectures.registry import ArchitectureSpec


class _DenseLayer(nn.Sequential):
    def __init__(self, in_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__(OrderedDict([
            ("norm1", nn.BatchNorm2d(in_features)),
            ("relu1", nn.ReLU(inplace=True)),
            ("conv1", nn.Conv2d(in_features, bn_size * growth_rate, kernel_size=1, bias=False)),
            ("norm2", nn.BatchNorm2d(bn_size * growth_rate)),
            ("relu2", nn.ReLU(inplace=True)),
            ("conv2", nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1,
                                bias=False)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], 1)


class _Transition(nn.Sequential):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm2d(in_features)),
            ("relu", nn.ReLU(inplace=True)),
            ("conv", nn.Conv2d(in_features, out_features, kernel_size=1, bias=False)),
            ("pool", nn.AvgPool2d(kernel_size=2, stride=2)),
        ]))


class DenseNet(nn.Module):
    """Returns logits; the caller applies the sigmoid (multi-label findings)."""

    def __init__(self, num_classes: int, in_channels: int = 1, growth_rate: int = 32,
                 block_config: Sequence[int] = (6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2,
                                padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = nn.Sequential(OrderedDict(
                (f"denselayer{j + 1}",
                 _DenseLayer(features + j * growth_rate, growth_rate, bn_size))
                for j in range(num_layers)))
            self.features.add_module(f"denseblock{i + 1}", block)
            features += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(features, features // 2))
                features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(features))
        self.classifier = nn.Linear(features, num_classes)

    def reset_parameters(self) -> None:
        """torchvision's "official" DenseNet initialisation (what torchxrayvision uses too)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.Linear):
                module.reset_parameters()
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x), inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1)).flatten(1)
        return self.classifier(out)


def gradcam_split(network: DenseNet) -> Tuple[Callable, Callable, str]:
    """The trunk is `features` (ending in norm5, 1024 x 7 x 7 for a 224 input); the head is the
    ReLU, global average pool and classifier that forward() applies to it."""
    def head(activations: Any) -> Any:
        pooled = F.adaptive_avg_pool2d(F.relu(activations), (1, 1))
        return network.classifier(pooled.flatten(1))
    return network.features, head, "features.norm5"


SPECS: Dict[str, ArchitectureSpec] = {"densenet121": ArchitectureSpec(
    name="densenet121", build=DenseNet, stem="features.conv0", head="classifier",
    gradcam_split=gradcam_split)}
