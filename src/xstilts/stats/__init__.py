"""Statistics of a study (DESIGN 4.7): `core` holds the tests, `analysis` applies them to a study's runs."""
