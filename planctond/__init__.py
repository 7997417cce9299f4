"""planctond: an owner-first daemon that lends a host's spare CPU to batch pools via pilot containers."""

__version__ = "0.1.0"
