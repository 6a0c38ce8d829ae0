"""`python -m fedgen` runs the configured experiment (see README)."""

from fedgen.cli import main

if __name__ == "__main__":
    main()
