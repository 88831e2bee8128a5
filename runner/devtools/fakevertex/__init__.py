"""A fake Vertex AI batch prediction server owned by the project: for tests, and for users who want
to try their manifests offline against the Cloud Storage and BigQuery emulators."""
