"""The appointments domain."""
