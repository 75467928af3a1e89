"""`python -m forecaster ...`: the `forecaster` command line (the form torchrun launches)."""

from forecaster.interface.cli import main

if __name__ == "__main__":  # not when a spawned training process imports this module as __mp_main__
    main()
