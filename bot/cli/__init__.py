"""The `bot` command and the launcher of the servers."""
