"""The EFS runtime: the torch payload the function imports from EFS for heatmaps, built for
Lambda's platform (build.py) and checked against its glibc (glibc.py)."""
