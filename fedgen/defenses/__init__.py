"""Defenses: client-side Flower mods and server-side strategy wrappers."""
