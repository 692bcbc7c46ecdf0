"""Exports a store model to an ONNX graph for the onnxruntime backend, without a second copy of
the weights: every initializer of the graph points (ONNX "external data": file, offset, length)
into the model's own model.safetensors, whose sha256 the manifest already pins.

One rewrite makes the graph faster without changing what it computes: a batch-norm that does
not follow a convolution (DenseNet's pre-activation norm1 on every concatenation, the
transitions' norm, norm5) becomes a depthwise 1x1 convolution whose weight and bias are computed
in the graph from the batch-norm's own parameters. onnxruntime folds that computation when it
builds the session and then keeps the whole network in its blocked NCHWc layout; left as
BatchNormalization, every dense layer converted its input out of that layout and back (DenseNet-121
at 2 threads: 35 -> 31 ms; at 1 thread 59 -> 55 ms; outputs within 3e-7).

The graph has a second output beside "logits": FEATURES, the tensor Grad-CAM's target layer
gives (the architecture's gradcam_split, e.g. DenseNet's features.norm5 before the head's ReLU),
named in the manifest's onnx.feature_map. onnxruntime computes it anyway on the way to the
logits; serving fetches it only for a heatmap, whose gradient then has a closed form
(inference.gradcam), so heatmaps need no torch.

Runs where the model is imported (needs torch and onnx); serving needs only onnxruntime.
"""
from typing import Any, Dict, Tuple

from chalicelib.inference.store import safetensors_layout

ONNX_FILE = "model.onnx"
OPSET = 17
FEATURES = "features"
_DTYPES = {"F32": 1}  # safetensors dtype -> onnx TensorProto elem_type


def export_graph(network: Any, architecture: str, in_channels: int, size: int, weights: bytes,
                 weights_file: str) -> bytes:
    """The ONNX graph of `network` (eval mode, an `architecture` of the registry) whose weights
    live in `weights_file`, with outputs "logits" and FEATURES."""
    import io

    import onnx
    import torch

    from chalicelib.inference.architectures.registry import spec

    trunk, head, _ = spec(architecture).gradcam_split(network)

    def logits_and_features(x: Any) -> Tuple[Any, Any]:
        features = trunk(x)
        return head(features), features  # == network(x): tests check head(trunk(x))

    buffer = io.BytesIO()
    example = torch.zeros(1, in_channels, size, size)
    # Traced through the network itself (its forward swapped for the export), so that every
    # initializer keeps its state_dict name, which is how it is found in the weights file.
    network.eval().forward = logits_and_features
    try:
        # No constant folding: folding would fuse batch-norm into new, unnamed tensors; keeping
        # the parameters as they are lets each one point into the safetensors file.
        # (onnxruntime fuses them itself when it builds the session.)
        torch.onnx.export(network, (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["logits", FEATURES],
                          do_constant_folding=False,
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"},
                                        FEATURES: {0: "batch"}})
    finally:
        del network.forward
    graph = onnx.load_from_string(buffer.getvalue())
    batchnorm_as_depthwise_conv(graph)
    layout = safetensors_layout(weights)
    for tensor in graph.graph.initializer:
        dtype, shape, offset, length = layout[tensor.name]
        if _DTYPES.get(dtype) != tensor.data_type or list(tensor.dims) != shape:
            raise ValueError(f"{tensor.name}: {dtype}{shape} in the weights, "
                             f"type {tensor.data_type}{list(tensor.dims)} in the graph")
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", weights_file), ("offset", str(offset)),
                           ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return graph.SerializeToString()


def batchnorm_as_depthwise_conv(model: Any) -> None:
    """Rewrites, in place, each BatchNormalization whose input no Conv produces into
    Conv(x, W, B, group=C) with W = reshape(gamma / sqrt(var + eps), [C, 1, 1, 1]) and
    B = beta - mean * gamma / sqrt(var + eps), computed by graph nodes from the same four
    parameters (so every initializer still points into the weights file)."""
    from onnx import TensorProto, helper

    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    aliases = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "Identity"}
    dims = {tensor.name: list(tensor.dims) for tensor in graph.initializer}

    def channels(name: str) -> int:
        while name in aliases:  # the exporter shares equal tensors through Identity nodes
            name = aliases[name]
        return dims[name][0]

    def follows_conv(node: Any) -> bool:  # onnxruntime fuses such a batch-norm into the Conv
        source = producers.get(node.input[0])
        return source is not None and source.op_type == "Conv"

    nodes = []
    for node in graph.node:
        if node.op_type != "BatchNormalization" or follows_conv(node):
            nodes.append(node)
            continue
        x, gamma, beta, mean, var = node.input
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        name = f"{node.name}/as_depthwise_conv"
        out = lambda part: f"{name}/{part}"  # noqa: E731
        nodes += [
            helper.make_node("Constant", [], [out("epsilon")], value=helper.make_tensor(
                out("epsilon_value"), TensorProto.FLOAT, [], [epsilon])),
            helper.make_node("Add", [var, out("epsilon")], [out("var_eps")]),
            helper.make_node("Sqrt", [out("var_eps")], [out("std")]),
            helper.make_node("Div", [gamma, out("std")], [out("scale")]),
            helper.make_node("Mul", [mean, out("scale")], [out("mean_scaled")]),
            helper.make_node("Sub", [beta, out("mean_scaled")], [out("bias")]),
            helper.make_node("Constant", [], [out("kernel_shape")], value=helper.make_tensor(
                out("kernel_shape_value"), TensorProto.INT64, [4], [-1, 1, 1, 1])),
            helper.make_node("Reshape", [out("scale"), out("kernel_shape")], [out("weight")]),
            helper.make_node("Conv", [x, out("weight"), out("bias")], list(node.output),
                             name=name, group=channels(gamma), kernel_shape=[1, 1]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)


def checked_graph(network: Any, architecture: str, in_channels: int, size: int, weights: bytes,
                  weights_file: str = "model.safetensors", tolerance: float = 1e-4
                  ) -> Tuple[bytes, Dict[str, Any]]:
    """export_graph, then onnxruntime against torch on seeded inputs in the model's input range:
    the graph is refused if any probability differs by more than `tolerance`, or the feature
    map by more than `tolerance` of its largest magnitude."""
    import numpy as np
    import torch

    from chalicelib.inference.architectures.registry import HEADS, spec
    from chalicelib.inference.backends import OnnxBackend, sigmoid

    graph = export_graph(network, architecture, in_channels, size, weights, weights_file)
    generator = torch.Generator().manual_seed(0)
    # Smooth noise, as images are: per-pixel noise saturates an untrained network's outputs
    # at 0 or 1, where any two backends agree and the check would prove nothing.
    coarse = torch.rand(3, in_channels, 14, 14, generator=generator)
    batch = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    batch = batch * 2048 - 1024 if in_channels == 1 else (batch - 0.45) / 0.226
    trunk, _, _ = spec(architecture).gradcam_split(network.eval())
    with torch.inference_mode():
        expected = sigmoid(network(batch).numpy())
        expected_features = trunk(batch).numpy()
    backend = OnnxBackend(graph, {weights_file: weights}, features=FEATURES)
    logits, features = backend.logits_and_features(batch.numpy())
    difference = float(np.abs(sigmoid(logits) - expected).max())
    if difference > tolerance:
        raise ValueError(f"onnxruntime differs from torch by {difference:.2e} (> {tolerance})")
    scale = float(np.abs(expected_features).max())
    features_difference = float(np.abs(features - expected_features).max())
    if features.shape != expected_features.shape or features_difference > tolerance * scale:
        raise ValueError(f"onnxruntime's {FEATURES} {features.shape} differ from torch's "
                         f"{expected_features.shape} by {features_difference:.2e}")
    return graph, {"file": ONNX_FILE, "opset": OPSET,
                   "checked_max_abs_difference": float(f"{difference:.3g}"),
                   "feature_map": {"output": FEATURES, "layer": HEADS[architecture].layer}}
