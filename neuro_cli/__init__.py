"""neuro_cli: the ``neuro`` command."""

__version__ = "0.1.0"
