"""`python -m services.api`: the same as `borgflow api`."""

import sys

from services.cli import main

if __name__ == "__main__":
    main(["api", *sys.argv[1:]])
