"""Choose study 03's starting concentration (``KAPPA_INIT``) on validation −ELBO: a brief run of the plain
S-VAE per candidate, on the cpu profile's settings. Validation digits only; prints the table.

    python scripts/choose_kappa_init.py [values ...]      # default: 150 300 1000 3000

The candidates start at 150: a Power Spherical posterior on S^(d-1) has mean cos(z, mu) = kappa / (kappa + d - 1),
so on S^15 the issue's floor at initialisation (mean cos >= 0.9) needs kappa_0 >= 135.
"""

import sys

from rotcore.studies import svae

values = [float(v) for v in sys.argv[1:]] or [150.0, 300.0, 1000.0, 3000.0]
table = svae.kappa_init_sweep(svae.PROFILES["cpu"], values, progress=False)
print(table.round(3).to_string())
print(f"lowest validation -ELBO: kappa_init = {table.val_neg_elbo.idxmin():g}")
