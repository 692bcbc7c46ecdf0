"""Deprecated name of `python -m vendor_efs.runtime`."""
from vendor_efs.deprecated import warn_renamed
from vendor_efs.runtime.build import main

if __name__ == "__main__":
    warn_renamed("python -m vendor_efs.build_runtime", "python -m vendor_efs.runtime")
    main()
