"""``python -m matdata``: the same CLI as the ``matdata`` command."""

from matdata.cli import main

if __name__ == "__main__":
    main()
