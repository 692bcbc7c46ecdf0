"""The local stack (local_stack/): its resources and relay in a moto server, and scripts/serve
as a whole."""
