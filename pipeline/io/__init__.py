"""Files: NIR read, validated, imported from and exported to other tools' conventions, atomic writes, tables and
plots, and the provenance every result file records.
"""
