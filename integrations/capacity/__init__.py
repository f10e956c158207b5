"""Capacity planning: how many workers a site's peak needs (simulation, inputs, plot)."""
