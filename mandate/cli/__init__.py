"""The ``mandate`` command. Each sub-command imports what it needs when it runs, so ``--help`` is fast."""
