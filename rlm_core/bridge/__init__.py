"""The process bridge."""
