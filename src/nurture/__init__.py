"""nurture: self-hosted email nurture sequences for people whose partner hesitates about couples therapy."""

__version__ = "0.1.0"
