"""Small shared utilities (atomic file writes, errors, logging set-up)."""
