"""The Kafka provider: ``request`` reads one inference request and builds its reply and dead
letter (no broker involved); ``worker`` consumes, answers and commits in batches; ``serve``
runs the worker as a process (``python -m gateway kafka``)."""
