"""Reports: tables and plots (`render`), the methods x T sweep, the cross-backend parity check and the demo
that runs the whole pipeline.
"""
