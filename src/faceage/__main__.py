"""``python -m faceage``: the same command as ``faceage``."""

from faceage.cli import main

if __name__ == "__main__":
    main()
