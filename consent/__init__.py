"""Subjects, consent records, retention schedules, revocation and erasure."""
