"""Deploy tooling: runs on the deploying machine, never inside the Lambda package.

Chalice zips only app.py, chalicelib/ and vendor/, so this folder stays out of the zip; it must
therefore never be imported by app.py or chalicelib.
"""
