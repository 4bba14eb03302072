"""From a torch model to a NIR file and a report: data, models, training, conversion, energy, CLI.
"""
