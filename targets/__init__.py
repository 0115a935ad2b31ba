"""Where we deploy: one TOML device profile per board (read by ``edgeexport.targets``)."""
