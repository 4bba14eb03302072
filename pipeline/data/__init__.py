"""Data and models: the data sets spikeport reads (`datasets`) or fetches into a cache (`fetch`), the model zoo
(`zoo`), and the input encodings that turn images into what a spiking network receives per step (`encoding`).

Every stage after it starts from a `Dataset` (and, for spike input, its encoded form) and a torch model.
"""
