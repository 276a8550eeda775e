"""Jobs: engine commands run in a separate process that a GUI or script can watch and stop."""
