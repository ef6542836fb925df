"""Job runtimes behind one small interface (see base.py)."""
