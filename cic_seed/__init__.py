"""Library behind the CIC data seeding scripts: one module per concern."""
