"""ANN to spiking NIR graph: the passes (trace, calibrate, normalize) and the conversion methods built from them.

`registry` names the methods (maxnorm, robustnorm and the papers' methods in `methods/`) and checks their options.
"""
