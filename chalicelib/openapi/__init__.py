"""GET /openapi.json: the API's contract, built from the app's own route table (app.routes) and
the JSON Schemas of its answers, so that a route cannot be added without being documented and an
answer cannot change shape without its test failing (tests/openapi/).

Pure Python: app.py's route imports it when the document is first asked for."""
