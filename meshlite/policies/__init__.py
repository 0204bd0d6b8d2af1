"""The policies, one module each. Import them from :mod:`meshlite`."""
