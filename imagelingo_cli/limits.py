"""The bounds of the options a run takes, in one place: what the library refuses and what
the settings accept."""

MAX_CONCURRENCY = 256  # requests in flight
MAX_RETRIES = 10  # automatic retries per variation
MAX_VARIATIONS = 100  # per image and language
