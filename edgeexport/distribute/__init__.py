"""Getting built files to their users: `edgeexport pull` with sha256 verification."""
