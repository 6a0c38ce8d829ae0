"""`python -m fedgen.compare`: the same as `fedgen compare` (fedgen.reporting.compare)."""

import sys

from fedgen.reporting.compare import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
