"""The Vertex AI backend: Vertex REST for jobs, Cloud Storage and BigQuery for rows. Google libraries are
imported only inside these modules' functions, so the local backend never loads them."""
