"""The ``runtrack`` command line."""
