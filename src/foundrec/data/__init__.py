"""Reading, cleaning, indexing and splitting interaction logs."""
