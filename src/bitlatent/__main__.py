"""``python -m bitlatent`` is the ``bitlatent`` command."""

from bitlatent.cli import main

if __name__ == "__main__":
    main()
