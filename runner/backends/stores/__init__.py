"""Where rows and answers live, one module per kind of store: local files (`files`), Cloud Storage
(`gcs`) and BigQuery (`bq`, with its source reads and safe names), and the collected record
beside a cloud destination (`records`). The job services (local, vertex) call them."""
