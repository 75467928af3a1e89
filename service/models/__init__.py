"""The models the service serves, in small pieces with their own state: references (`refs`), the
registry's calls and health (`registry`), the warm-up check (`warmup`), loading (`loader`),
failed loads and lookups remembered (`failures`), the alias poller (`poller`), and the store that
holds the loaded models and ties the pieces together (`store`)."""
