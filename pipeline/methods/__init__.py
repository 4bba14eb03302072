"""The papers' conversion and training methods, one module each; importing this package registers them.

Each module calls `pipeline.convert.register(Method(...))`.
"""
from pipeline.methods import optimal_shift  # noqa: F401
from pipeline.methods import dnisnm  # noqa: F401
from pipeline.methods import rnl_ril  # noqa: F401
from pipeline.methods import snn2ann  # noqa: F401
from pipeline.methods import joint_asnn  # noqa: F401
from pipeline.methods import stbp  # noqa: F401
