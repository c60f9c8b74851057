"""tailorcast."""
