"""The channels users talk through, one subpackage each: `telegram` and `web`."""
