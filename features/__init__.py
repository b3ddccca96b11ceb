"""Video decoding, feature extractors and the Zarr feature store (never imports tal)."""
