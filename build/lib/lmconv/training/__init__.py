"""The training stage: profiles (YAML, schema-checked), the GPT-NeoX model anatomy and the deterministic, resumable
trainer."""
