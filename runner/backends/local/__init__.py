"""The embedded local backend: jobs under .batchrun/ with Vertex's states, labels and output shapes."""
