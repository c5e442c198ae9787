"""Scenario YAML: schema, loader with file:line errors, page-table builder."""
