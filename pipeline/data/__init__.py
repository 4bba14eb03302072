"""Data and models: the data sets spikeport reads (`datasets`) or fetches into a cache (`fetch`), the model zoo (`zoo`).

Nothing here knows about spikes; every stage after it starts from a `Dataset` and a torch model.
"""
