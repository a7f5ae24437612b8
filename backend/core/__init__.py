"""The function-calling core, pure: the call shape, function specs, prompt formats, reading replies, validation."""
