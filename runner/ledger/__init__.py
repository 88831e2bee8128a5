"""The row pass: each source row classed against the destination's answers; reads, never writes."""
