"""modelport's benchmark suite: ``python -m bench`` (``make bench``)."""
