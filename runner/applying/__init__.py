"""The one writer: carries out a plan's changes and the hands-on commands against the backends."""
