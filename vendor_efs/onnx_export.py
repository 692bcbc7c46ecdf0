"""Exports a store model to an ONNX graph for the onnxruntime backend, without a second copy of
the weights: every initializer of the graph points (ONNX "external data": file, offset, length)
into the model's own model.safetensors, whose sha256 the manifest already pins.

Runs where the model is imported (needs torch and onnx); serving needs only onnxruntime.
"""
import json
import struct
from typing import Any, Dict, Tuple

ONNX_FILE = "model.onnx"
OPSET = 17
_DTYPES = {"F32": 1}  # safetensors dtype -> onnx TensorProto elem_type


def safetensors_layout(weights: bytes) -> Dict[str, Tuple[str, list, int, int]]:
    """name -> (dtype, shape, absolute offset, length) inside the safetensors file."""
    (header_size,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8:8 + header_size])
    header.pop("__metadata__", None)
    start = 8 + header_size
    return {name: (info["dtype"], info["shape"], start + info["data_offsets"][0],
                   info["data_offsets"][1] - info["data_offsets"][0])
            for name, info in header.items()}


def export_graph(network: Any, in_channels: int, size: int, weights: bytes,
                 weights_file: str) -> bytes:
    """The ONNX graph of `network` (eval mode) whose weights live in `weights_file`."""
    import io

    import onnx
    import torch

    buffer = io.BytesIO()
    example = torch.zeros(1, in_channels, size, size)
    # No constant folding: folding would fuse batch-norm into new, unnamed tensors; keeping
    # the parameters as they are lets each one point into the safetensors file.
    # (onnxruntime fuses them itself when it builds the session.)
    torch.onnx.export(network.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                      input_names=["image"], output_names=["logits"],
                      do_constant_folding=False,
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    graph = onnx.load_from_string(buffer.getvalue())
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


def checked_graph(network: Any, in_channels: int, size: int, weights: bytes,
                  weights_file: str = "model.safetensors", tolerance: float = 1e-4
                  ) -> Tuple[bytes, Dict[str, Any]]:
    """export_graph, then onnxruntime against torch on seeded inputs in the model's input range:
    the graph is refused if any probability differs by more than `tolerance`."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    from chalicelib.backends import OnnxBackend, sigmoid

    graph = export_graph(network, in_channels, size, weights, weights_file)
    generator = torch.Generator().manual_seed(0)
    batch = torch.rand(3, in_channels, size, size, generator=generator)
    batch = batch * 2048 - 1024 if in_channels == 1 else (batch - 0.45) / 0.226
    with torch.inference_mode():
        expected = sigmoid(network.eval()(batch).numpy())
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / weights_file).write_bytes(weights)
        (Path(folder) / ONNX_FILE).write_bytes(graph)
        got = sigmoid(OnnxBackend(Path(folder) / ONNX_FILE).logits(batch.numpy()))
    difference = float(np.abs(got - expected).max())
    if difference > tolerance:
        raise ValueError(f"onnxruntime differs from torch by {difference:.2e} (> {tolerance})")
    return graph, {"file": ONNX_FILE, "opset": OPSET,
                   "checked_max_abs_difference": float(f"{difference:.3g}")}
