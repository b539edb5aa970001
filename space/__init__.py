"""space package: layers/ (FS layers, fast paths, FS accounting), darts/ (the DARTS networks
and their budget accounting), models/ (the network registry and standard networks).
Imports go one way: layers <- darts <- models."""
