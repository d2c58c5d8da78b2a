"""The sync agent: intents and the bucket listing in, complete versions and config.json out."""
