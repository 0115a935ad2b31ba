"""Data shipped with the package (calibration measurements with their provenance)."""
