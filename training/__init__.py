"""Reference photo sets, captions, training jobs, the model registry and progress."""
