"""Placeholder replaced below."""


def main() -> None:
    """Run the CLI."""
