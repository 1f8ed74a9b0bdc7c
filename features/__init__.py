"""Point-in-time feature building for lead scoring: data contract, features, labels, simulator."""
