"""Run semantics: lifecycle, fold, read models, queries."""
