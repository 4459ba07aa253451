"""The template reader: template.yaml as data for the local stack and the tests."""
