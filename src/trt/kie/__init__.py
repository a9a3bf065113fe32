"""KIE.ai: the HTTP client, the error table, callback verification."""
