"""Stand-ins for a sweep's cell process, in a module of their own: a spawned process imports the
module its target lives in, and this one imports neither torch nor sgan."""

import json
import time
from pathlib import Path


def fake_cell(values, threads, gpu, errors, environ) -> None:
    """Stands in for sweep.executors._run_cell: records which GPU it was given and when it ran."""
    start = time.time()
    time.sleep(0.5)
    Path(values["out"]).mkdir(parents=True)
    Path(values["out"], "ran.json").write_text(json.dumps({"gpu": gpu, "threads": threads, "start": start,
                                                           "end": time.time()}))
