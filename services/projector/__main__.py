"""`python -m services.projector`: the same as `borgflow projector`."""

import sys

from services.cli import main

if __name__ == "__main__":
    main(["projector", *sys.argv[1:]])
