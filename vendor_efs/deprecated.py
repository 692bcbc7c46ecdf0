"""The commands' old names keep working for a while, with a message naming the new one."""
import sys


def warn_renamed(old: str, new: str) -> None:
    print(f"{old} is deprecated and will be removed: use {new}", file=sys.stderr)
