"""`python -m deploy --stage dev`: see deploy/deploy.py."""
from deploy.deploy import main

if __name__ == "__main__":
    raise SystemExit(main())
