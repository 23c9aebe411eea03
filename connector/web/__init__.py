"""The admin and finance web UI."""
