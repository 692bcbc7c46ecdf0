"""Deprecated name of `python -m vendor_efs.models demo`."""
from vendor_efs.deprecated import warn_renamed
from vendor_efs.models.demo import main

if __name__ == "__main__":
    warn_renamed("python -m vendor_efs.demo_model", "python -m vendor_efs.models demo")
    main()
