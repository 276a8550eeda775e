"""The ``nnsam`` command line."""
