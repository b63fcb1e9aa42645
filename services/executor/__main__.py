"""`python -m services.executor`: the same as `borgflow executor`."""

import sys

from services.cli import main

if __name__ == "__main__":
    main(["executor", *sys.argv[1:]])
