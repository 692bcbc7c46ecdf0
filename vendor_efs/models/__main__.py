"""`python -m vendor_efs.models list|use|demo|import ...`: see models/cli.py."""
from vendor_efs.models.cli import main

if __name__ == "__main__":
    main()
