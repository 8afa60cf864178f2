"""The staff console's logic, shared by the web console (bot/channels/web/console.py) and the `bot` command."""
