"""Data and models: the data sets spikeport reads or fetches (`datasets`) and the model zoo (`zoo`).

Nothing here knows about spikes; every stage after it starts from a `Dataset` and a torch model.
"""
