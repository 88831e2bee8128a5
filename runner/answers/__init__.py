"""A job's output as result rows: their shape, parsing, collection and whose fault a failure is; pure."""
