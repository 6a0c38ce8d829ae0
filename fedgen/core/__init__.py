"""Lowest layer: records that cross boundaries, errors, seeding, atomic files, logging set-up."""
