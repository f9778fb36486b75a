"""``python -m sbcsim``: the same command line as the ``sbcsim`` script."""

from sbcsim.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main(prog_name="sbcsim")
