"""``python -m lensloop`` runs the command-line interface."""

from lensloop.cli import main

if __name__ == "__main__":
    main()
