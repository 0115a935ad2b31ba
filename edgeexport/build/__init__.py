"""`edgeexport build`: the α × resolution sweep, on this host or a Dask farm, and its reports."""
