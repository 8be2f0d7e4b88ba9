"""The ``semsearch`` command: one console script that dispatches to the apps."""
