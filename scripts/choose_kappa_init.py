"""Choose study 03's starting concentration (``KAPPA_INIT``) on validation −ELBO: a brief run of the plain
S-VAE per candidate, on the cpu profile's settings. Validation digits only; prints the table.

    python scripts/choose_kappa_init.py [values ...]      # default: 10 30 100 300 1000
"""

import sys

from rotcore.studies import svae

values = [float(v) for v in sys.argv[1:]] or [10.0, 30.0, 100.0, 300.0, 1000.0]
table = svae.kappa_init_sweep(svae.PROFILES["cpu"], values, progress=False)
print(table.round(3).to_string())
print(f"lowest validation -ELBO: kappa_init = {table.val_neg_elbo.idxmin():g}")
