"""The symbolic-knowledge data model shared by graphs, critics and students: ids and normalisation,
the relation schema (ATOMIC2020), the events/triples tables, and dataset exports."""
