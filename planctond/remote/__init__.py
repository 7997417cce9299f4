"""The remote config's network side: the HTTPS fetch, the on-disk copy of the last good document
and the `github:` shorthand. What a document means is the config layer's (`config/layers.py`);
when it is fetched and applied is the supervisor's (`supervisor/remote_watch.py`)."""
