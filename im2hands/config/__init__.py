"""Typed YAML configs: schemas, ``inherit_from`` composition and command-line overrides."""
