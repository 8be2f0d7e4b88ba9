"""The index folder: FAISS vectors, the SQLite document store, the manifest and atomic publish."""
