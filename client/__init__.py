"""Command-line clients of the API, run on a user's machine: `python -m client batch FOLDER`.

Outside the Lambda package (app.py and chalicelib never import it) and free of it: the client
speaks only the HTTP contract of /xray/jobs, so it needs requests, tqdm and botocore (for
SigV4), not the server's code.
"""
