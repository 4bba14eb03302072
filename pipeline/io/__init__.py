"""Files: NIR read, validated and imported from other tools' conventions, ANN checkpoints, atomic writes, and
the provenance every result file records.
"""
