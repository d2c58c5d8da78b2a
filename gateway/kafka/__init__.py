"""The Kafka provider: ``request`` reads one inference request and builds its reply and dead
letter (no broker involved); ``worker`` consumes, answers and commits in batches."""
