"""The model zoo: importing this package registers every model."""
from recstudio.model.zoo.general import bpr  # noqa: F401
from recstudio.model.zoo.general import ncf  # noqa: F401
from recstudio.model.zoo.rating import mf  # noqa: F401
from recstudio.model.zoo.general import ease  # noqa: F401
from recstudio.model.zoo.general import wrmf  # noqa: F401
from recstudio.model.zoo.seq import sasrec  # noqa: F401
from recstudio.model.zoo.general import multivae  # noqa: F401
