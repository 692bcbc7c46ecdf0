"""Test-only helpers for the deploy tests: a local moto server with a small shim over moto's
gaps, a user's VPC + EFS built in it, a throwaway copy of the project, a Lambda-like runner.
Nothing here is used by the product (deploy/ never imports it)."""
