"""Paper figures and tables, drawn from metrics files only."""
