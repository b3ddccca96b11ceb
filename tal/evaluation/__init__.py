"""Detection mAP exactly as the official ActivityNet evaluation computes it."""
