"""The batch indexing job: corpus -> embeddings -> a published index folder."""
