"""The model: its store, preprocessing, backends and heatmaps. Empty on purpose: importing the
package loads nothing (numpy, onnxruntime and torch are imported where they are used)."""
