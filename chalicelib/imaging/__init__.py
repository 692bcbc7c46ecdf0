"""Bytes in, one grayscale image out. Empty on purpose: importing the package loads nothing."""
