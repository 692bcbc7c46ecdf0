"""What runs the network. Both take a float32 batch (numpy) and give logits (numpy).

onnxruntime (the default when the manifest has an ONNX graph and onnxruntime is installed): it
imports in tens of milliseconds where torch takes seconds, runs DenseNet-121 faster on CPU, and
its wheel is small enough for the Lambda zip, so classification needs nothing from EFS but the
model, and heatmaps need nothing more: a graph whose manifest names its feature map
(onnx.feature_map) gives the Grad-CAM layer's tensor beside the logits, fetched only when a
heatmap is asked. torch: the reference, and the heatmap's gradients for a graph without that
output (models imported before it existed).
"""
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np


def cpu_threads() -> int:
    """The vCPUs this process may use (Lambda: 1 at 1,769 MB up to 6 at 10,240 MB)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, graph: bytes, external_files: Mapping[str, bytes],
                 features: Optional[str] = None) -> None:
        """graph: the ONNX graph's bytes; external_files: file name -> bytes for every file its
        initializers point into (ONNX external data: model.safetensors). Both are the bytes the
        loader hashed: onnxruntime opens no file, so nothing swapped on disk after the check can
        run. With a table given, onnxruntime refuses a graph naming any file not in it (without
        one it would read the name relative to the working directory). features: the graph's
        output holding the Grad-CAM layer's tensor (the manifest's onnx.feature_map.output),
        if it has one."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        names = list(external_files)
        buffers = [external_files[name] for name in names]
        # onnxruntime copies what it needs while the session is built; the buffers stay ours.
        options.add_external_initializers_from_files_in_memory(
            names, buffers, [len(buffer) for buffer in buffers])
        self._session = onnxruntime.InferenceSession(graph, options,
                                                     providers=["CPUExecutionProvider"])
        self.features = features

    def input_shape(self) -> List[Any]:
        """The graph's input dimensions: ["batch", channels, height, width]."""
        return list(self._session.get_inputs()[0].shape)

    def output_shape(self, name: str = "logits") -> Optional[List[Any]]:
        """An output's dimensions (logits: ["batch", outputs]), None if the graph has none of
        that name."""
        shapes = {output.name: list(output.shape) for output in self._session.get_outputs()}
        return shapes.get(name)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(["logits"], {"image": batch})[0]

    def logits_and_features(self, batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """One forward pass giving the logits (the same as logits()) and the feature map."""
        if self.features is None:
            raise ValueError("this graph has no feature map output")
        logits, features = self._session.run(["logits", self.features], {"image": batch})
        return logits, features


class TorchBackend:
    name = "torch"

    def __init__(self, network: Any, torch: Any) -> None:
        self.network, self.torch = network, torch
        torch.set_num_threads(cpu_threads())

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.network(self.torch.from_numpy(batch)).numpy()


def build_torch_network(manifest: Any, weights: bytes, torch: Any) -> Any:
    """The manifest's architecture with these safetensors weights, strictly, in eval mode."""
    from safetensors.torch import load as load_safetensors

    from chalicelib.inference.architectures.registry import spec
    from chalicelib.inference.store import ManifestError

    architecture = dict(manifest.architecture)
    build = spec(architecture.pop("name")).build
    state = load_safetensors(weights)
    with torch.device("meta"):  # no random init: every parameter comes from the file
        network = build(num_classes=len(manifest.labels), **architecture)
    missing, unexpected = key_mismatch(network, state)
    if missing or unexpected:
        raise ManifestError(f"the weights do not fit {manifest.architecture['name']}: missing "
                            f"{missing[:3]}, unexpected {unexpected[:3]}")
    wrong = shape_mismatch(network, state)
    if wrong:
        name, expected, found = wrong[0]
        raise ManifestError(f"the weights do not fit the manifest's {manifest.architecture['name']}"
                            f" with {len(manifest.labels)} outputs: {name} is {found} in the "
                            f"weights, {expected} in the network ({len(wrong)} such tensors). "
                            f"Does \"labels\" name every output of the model, and \"architecture\" "
                            f"match it? Fix manifest.json or re-import the model.")
    network.load_state_dict(state, strict=True, assign=True)
    return network.eval()


def key_mismatch(network: Any, state: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """The state-dict keys the network has and the weights lack, and the reverse."""
    expected = set(network.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def shape_mismatch(network: Any, state: Dict[str, Any]) -> List[Tuple[str, List[int], List[int]]]:
    """(name, the network's shape, the weights' shape) for each tensor whose shapes differ."""
    return [(name, list(tensor.shape), list(state[name].shape))
            for name, tensor in network.state_dict().items()
            if name in state and tuple(tensor.shape) != tuple(state[name].shape)]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))

