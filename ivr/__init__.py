"""The caller side: FastAGI server, call flows, prompts."""
