"""pacsflow's models: packages, registry, analyzers, phantoms, training and evaluation (pure).

Importing the package sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already chose
one. libgomp (torch's OpenMP) reads it once, when torch is first imported; with the default
spinning policy, torch's intra-op threads on a small CPU shared with PostgreSQL, Orthanc, a
Prefect server and other workers burn their time slices waiting for each other: measured here
on 2 cores under a load of 6, a 200-slice brain MRI took 12.7 s with spinning threads and
0.8 s with passive ones (the same run with one thread: 1.3 s).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
