"""What every layer uses: atomic writes, credential redaction, logging, the expected
errors, settings hashes and the figures."""
