"""A small, paid sample of a change before the whole run: which rows, run through the one writer."""
