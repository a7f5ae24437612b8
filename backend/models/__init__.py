"""The model clients: the protocol every client follows, TGI, OpenAI-compatible servers, the embedded model."""
