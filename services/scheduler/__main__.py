"""`python -m services.scheduler`: the same as `borgflow scheduler`."""

import sys

from services.cli import main

if __name__ == "__main__":
    main(["scheduler", *sys.argv[1:]])
