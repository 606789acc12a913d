#!/usr/bin/env python3
"""Writes a synthetic GeoNames dump the size of allCountries.txt, for
measuring the offline provider's `places.geonames_file` (BENCHMARKS.md,
"Places"). Nothing is downloaded: the rows are made up, in GeoNames' exact
tab-separated format (19 columns), with about the real file's shape:

- places clustered around towns (GeoNames is dense where people are), with
  a few scattered everywhere, oceans and poles included;
- feature classes in roughly the real proportions (S, H, T, P, L, A, V, R, U);
- names of 4 to 30 characters, alternate names on some rows, so a row is
  about 135 bytes, as in allCountries (about 1.6 GB for 12 million rows).

Usage: gen_geonames.py ROWS OUT_FILE [SEED]
Also writes OUT_FILE's folder's admin1CodesASCII.txt, so vicinities have
names. Prints the query points (town centres) to OUT_FILE.queries, one
"lat lng" a line, for the latency run.
"""

import os
import random
import sys

CLASSES = [
    # (class, codes, weight)
    ("S", ["HTL", "SCH", "CH", "AIRP", "HSP", "FRM", "BLDG", "MUS", "LTHSE", "RSTN", "PO"], 30),
    ("H", ["STM", "LK", "SPNG", "WLL", "RSV", "BAY"], 22),
    ("T", ["MT", "HLL", "ISL", "PK", "CAPE", "VAL"], 18),
    ("P", ["PPL", "PPLA", "PPLA2", "PPLX", "PPLL"], 15),
    ("L", ["PRK", "AREA", "LCTY", "RESV", "PRT"], 6),
    ("A", ["ADM2", "ADM3", "ADM4", "ADMD"], 4),
    ("V", ["FRST", "GRSLD"], 2),
    ("R", ["RD", "TRL", "RR"], 2),
    ("U", ["SMU", "RDGU"], 1),
]
SYLLABLES = "ka lo mi san ta ri ve na or el du bra ston ham wick ville berg dorf ton ley mont".split()
COUNTRIES = ["US", "FR", "DE", "CN", "IN", "BR", "RU", "MX", "GB", "JP", "NO", "AU", "CA", "ZA"]


def name(rng):
    n = rng.randint(2, 5)
    return "".join(rng.choice(SYLLABLES) for _ in range(n)).capitalize()[:30]


def main():
    rows = int(sys.argv[1])
    out = sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    weights = [w for _, _, w in CLASSES]
    towns = []
    for _ in range(max(1, rows // 60)):
        towns.append((rng.uniform(-55, 70), rng.uniform(-180, 180), rng.choice(COUNTRIES)))
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for gid in range(1, rows + 1):
            if rng.random() < 0.03:
                lat, lng, cc = rng.uniform(-90, 90), rng.uniform(-180, 180), ""
            else:
                tlat, tlng, cc = rng.choice(towns)
                lat = max(-90.0, min(90.0, rng.gauss(tlat, 0.15)))
                lng = rng.gauss(tlng, 0.15)
                lng = (lng + 180.0) % 360.0 - 180.0
            cls, codes, _ = rng.choices(CLASSES, weights)[0]
            code = rng.choice(codes)
            nm = name(rng)
            alt = ",".join(name(rng) for _ in range(rng.randint(0, 6)))
            admin1 = "%02d" % rng.randint(1, 20) if cc else ""
            f.write(
                f"{gid}\t{nm}\t{nm}\t{alt}\t{lat:.5f}\t{lng:.5f}\t{cls}\t{code}\t{cc}\t\t"
                f"{admin1}\t{rng.randint(1, 300) if cc else ''}\t\t\t{rng.randint(0, 5000)}\t\t"
                f"{rng.randint(0, 3000)}\tEurope/Paris\t2024-01-01\n"
            )
    with open(os.path.join(os.path.dirname(out) or ".", "admin1CodesASCII.txt"), "w") as f:
        for cc in COUNTRIES:
            for a in range(1, 21):
                f.write(f"{cc}.{a:02d}\tRegion {a} of {cc}\tRegion {a} of {cc}\t{a}\n")
    with open(out + ".queries", "w") as f:
        for tlat, tlng, _ in rng.sample(towns, min(len(towns), 1000)):
            f.write(f"{tlat:.5f} {tlng:.5f}\n")


if __name__ == "__main__":
    main()
