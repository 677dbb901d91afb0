"""Layer streams: decompression, the streaming tar walk, and the one place that decides
whether a file is still present, deleted or overwritten in the final filesystem."""
