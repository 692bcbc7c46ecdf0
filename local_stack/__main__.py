"""python -m local_stack [chalice local options]: see local_stack/supervisor.py."""
import sys

from local_stack.supervisor import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
