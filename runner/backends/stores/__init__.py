"""Where rows and answers live, one module per kind of store: local files (`files`) today; the
Cloud Storage and BigQuery stores still live inside the Vertex backend (issue 25, item 4)."""
