"""Rollback drills: a pure plan (``plan``) and, later, a thin executor."""
