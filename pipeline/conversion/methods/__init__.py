"""The paper conversion methods: optimal-shift/optimal-noshift (Deng & Gu), rnl-ril (Ding et al.), dnisnm (Wang et al.).

Each module calls `pipeline.conversion.registry.register(Method(...))` at import.
"""
from pipeline.conversion.methods import dnisnm, optimal_shift, rnl_ril  # noqa: F401
