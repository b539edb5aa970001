"""The DARTS networks: candidate ops (ops), mixed and partial-channel edges (mixed, partial),
the search cell and supernet (search_cell, supernet), the evaluation networks (network), and
their parameter accounting against a budget (budget). Built from space.layers."""
