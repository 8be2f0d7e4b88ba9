"""semsearch core: the encoder, the model-folder format and the index folder that every app shares."""
