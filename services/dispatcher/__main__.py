"""`python -m services.dispatcher`: the same as `borgflow dispatcher`."""

import sys

from services.cli import main

if __name__ == "__main__":
    main(["dispatcher", *sys.argv[1:]])
