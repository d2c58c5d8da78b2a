"""The MinIO webhook receiver: bucket events in, durable intent files out. It never downloads."""
