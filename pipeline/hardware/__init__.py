"""Hardware targets: hwconfig files, quantization to a target's number formats, resource maps, energy per
inference and the deployment bundle that combines them.
"""
