"""`python -m services.notifier`: the same as `borgflow notifier`."""

import sys

from services.cli import main

if __name__ == "__main__":
    main(["notifier", *sys.argv[1:]])
