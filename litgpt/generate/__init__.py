"""Text generation: sampling, the KV-cache decoding loop, and the `generate` commands."""
