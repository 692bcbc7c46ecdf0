"""The networks a manifest may name, one module each; registry.py lists them without torch."""
