"""The request path: one HTTP client for every OpenAI-compatible endpoint (streaming, retries,
pacing to rate limits, timing), structured output on top of it, separating a reasoning model's
thinking from its answer, and the embedded llama.cpp server.

Where things are: ``client`` (ChatClient, the one way a request is sent), ``endpoint`` (Endpoint,
cache_key), ``failures`` (RequestError and its kinds), ``limits`` and ``pacing`` (how hard an
endpoint is pressed), ``reply`` and ``thinking`` (reading an answer), ``preflight`` (the check
before a run), ``structured`` (JSON output), ``local`` (the embedded server)."""
