"""Knowledge Translation (Sun et al., 2024): translate a large block's parameters into a small block."""
