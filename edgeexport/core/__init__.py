"""The foundation: errors, atomic file I/O, the console, versions, runtimes, validation tolerances, and the facts of the host and of a board's address. Imports nothing else of edgeexport."""
