"""The repository a run is about: batchrun.yaml, the manifests, their schemas and checks; reads files only."""
