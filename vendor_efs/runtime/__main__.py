"""`python -m vendor_efs.runtime --arch arm64|x86_64 ...`: builds the EFS runtime (build.py)."""
from vendor_efs.runtime.build import main

if __name__ == "__main__":
    main()
