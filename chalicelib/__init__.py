"""Everything behind app.py's routes. Modules that need numpy, Pillow or torch import them
where they are used, so that importing app.py stays light (chalice deploy imports it)."""
import os

# The service's version: reports (SR, FHIR) and the OpenAPI document name it.
__version__ = "0.15.0"

# numpy's OpenBLAS thread pool would compete with onnxruntime's for the same few vCPUs; the
# app's own numpy work (decoding, the resize) is small. Measured at 2 vCPUs: request p95
# 115 ms -> 70 ms. Set before anything imports numpy; an operator's own value wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
