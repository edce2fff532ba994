"""HJ 212 codec (placeholder until its own issue)."""

__all__: list[str] = []
