"""Deprecated name of `python -m vendor_efs.models import`."""
from vendor_efs.deprecated import warn_renamed
from vendor_efs.models.importer import main

if __name__ == "__main__":
    warn_renamed("python -m vendor_efs.import_model", "python -m vendor_efs.models import")
    main()
