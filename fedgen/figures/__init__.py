"""Figures: plain functions returning a figure and the numbers it draws, and the drawing pool."""
