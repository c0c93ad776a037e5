"""The studio: generation and edit jobs, outputs, approval queue, provenance, exports."""
