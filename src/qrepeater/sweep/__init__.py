"""Parameter sweeps: tasks with strong ids, addable statistics, an append-only store that
resumes and merges, and executors from a laptop's cores to a Dask cluster.

Modelled on sinter (quantumlib/Stim ``glue/sample``)::

    import qrepeater as qr
    spec = qr.load_spec("examples/sweeps/link_alpha_distance.toml")
    for event in qr.sweep(spec.tasks, store="results.csv", executor="local:2"):
        print(event.tasks_done, "/", event.tasks_total)
    table = qr.read_results("results.csv")     # pandas-free; .to_arrow(), .to_pandas()
"""

from qrepeater.sweep._core import SweepEvent, collect, sweep
from qrepeater.sweep._errors import ExecutorError, MergeError, SpecError, StoreError
from qrepeater.sweep._executors import (
    DaskExecutor,
    Executor,
    LocalExecutor,
    SerialExecutor,
    make_executor,
)
from qrepeater.sweep._models import MODELS, Model, Param, make_task, run_piece
from qrepeater.sweep._results import ResultTable, TaskResult, read_results
from qrepeater.sweep._spec import SweepSpec, load_spec, parse_spec
from qrepeater.sweep._stats import Moments, TaskStats
from qrepeater.sweep._task import SampleBudget, Task

__all__ = [
    "MODELS",
    "DaskExecutor",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "MergeError",
    "Model",
    "Moments",
    "Param",
    "ResultTable",
    "SampleBudget",
    "SerialExecutor",
    "SpecError",
    "StoreError",
    "SweepEvent",
    "SweepSpec",
    "Task",
    "TaskResult",
    "TaskStats",
    "collect",
    "load_spec",
    "make_executor",
    "make_task",
    "parse_spec",
    "read_results",
    "run_piece",
    "sweep",
]
