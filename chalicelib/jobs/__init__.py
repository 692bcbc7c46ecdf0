"""Upload jobs: the way in for images too large (or too many) for the synchronous POST /xray.

A client asks for a job, uploads straight to S3 with a presigned POST, and reads the job's status;
S3's event (through EventBridge) wakes the worker, which classifies with the same service as the
synchronous route. All state is in the stage's jobs bucket (layout.py), written with conditional
requests, so every container sees the same job and a repeated event changes nothing.
"""
