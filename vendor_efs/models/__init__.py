"""Model versions in a store: the demo model, imports of real weights, their ONNX graphs, and
the list/use command (`python -m vendor_efs.models`)."""
