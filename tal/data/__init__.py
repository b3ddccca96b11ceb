"""Annotations, label maps and importers for public annotation formats."""
