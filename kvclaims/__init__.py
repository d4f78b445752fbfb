"""kvclaims: resident KV claim contract."""
