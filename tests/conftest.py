import os

# On a shared CPU, OpenMP threads that spin-wait for a busy core make small models 10-50x slower;
# passive waiting keeps the suite fast whatever else the machine runs. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
