"""Developer tools: `make bench`, `make evaluate`, `make screenshot`, the data checks."""
