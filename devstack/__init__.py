"""``make run``: the whole sync path on one machine, with an embedded S3-compatible store."""
