"""`python -m longapps.cli ...` runs the command line."""
from longapps.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
