"""The ``p2ptools`` command line: one thin module per command (see ``main.py``)."""
