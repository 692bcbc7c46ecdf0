"""The fuzz command (scripts/fuzz, python -m fuzzing): untrusted uploads thrown at the decoders
and at the real Lambda entry until one breaks the rule every answer must keep (rule.py).

Two modes, because each finds what the other misses: coverage.py lets atheris grow inputs that
reach new code in the decoders (ours, Pillow's plugins and pydicom are Python, so their branches
guide it); structure.py rewrites the shared radiographs where parsers trust their input (chunk
and segment lengths, declared sizes, DICOM tags and pixel-data lengths, truncation, polyglots)
and sends each through app.app(event, context) as API Gateway would. Every input that ever broke
the rule is kept (corpus.py, tests/data/fuzz-corpus) and replayed by the tests.
"""
