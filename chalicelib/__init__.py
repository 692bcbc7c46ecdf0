"""Everything behind app.py's routes. Modules that need numpy, Pillow or torch import them
where they are used, so that importing app.py stays light (chalice deploy imports it)."""
