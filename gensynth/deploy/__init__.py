"""What ships: trained networks exported complete (normalisation, metadata, int8) and the exported files evaluated
and timed as a deployer runs them."""
