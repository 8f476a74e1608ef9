"""rslp fleet: queue-driven batch inference on satellite imagery with rslearn.

Every rslp process (the CLIs, workers, their task processes) leaves without the
interpreter's last garbage collections: at exit Python traverses every object still
alive, for memory the operating system takes back anyway. Measured: 1.5 CPU-seconds in
a task process that ran the demo's predict (torch and Lightning loaded), held as long
before its worker could exit; about 0.05 s in a command that imported rslearn and
rasterio. Exit handlers run before those collections, so this one freezes the objects
(``gc.freeze``) and they pass them by; the rest of the shutdown (other exit handlers,
flushed logs, multiprocessing's finalizers) is as it was. What it gives up: garbage caught
in reference cycles is not finalized at exit (Python does not promise that either); rslp
closes every file it writes explicitly.
"""

import atexit
import gc

atexit.register(gc.freeze)
