#!/usr/bin/env python3
"""Build the offline multi-domain corpus for MoEKit fixtures.

Domains: python, c, swift, english, german, french, math.
All sources are local to the machine (no network except `apt-get download`
of the manpages-de / manpages-fr Debian packages, which the script does if
they are not already present in <out>/debs).

Output (never committed, lives under work-data/):
  <out>/corpus/<domain>/{train,calib,heldout}.jsonl   one {"id","text"} document per line
  <out>/corpus/sources.json                             per-domain source, licence, counts

Documents are deduplicated by exact SHA-256 of their text and split BY DOCUMENT
(seeded shuffle) into heldout / calib / train, so no document is in two splits.

Usage:
  python tools/corpus/build_corpus.py --out work-data --seed 1234
"""
import argparse
import glob
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool

DOMAINS = ["python", "c", "swift", "english", "german", "french", "math"]

PY_LIB = "/root/.pyenv/versions/3.11.7/lib/python3.11"
SWIFT_ROOT = "/opt/swift-packages"

TRAIN_CAP = 4_000_000      # chars of training text per domain
HELDOUT_TARGET = 800_000   # chars of held-out documents per domain (trimmed later to <=130k tokens)
CALIB_TARGET = 300_000     # chars of calibration documents per domain
MAX_DOC = 100_000          # truncate single documents (chars)
MAX_EVAL_DOC = 30_000      # truncate docs that go to heldout/calib, for variety
GATHER_TARGET = 9_000_000  # gather more than needed: eval docs are truncated

SOURCES = {
    "python": {"source": f"CPython 3.11.7 standard library .py files ({PY_LIB}, pyenv), without test/tests/idle_test directories and site-packages",
               "licence": "PSF-2.0 (Python Software Foundation License)"},
    "c": {"source": "C headers under /usr/include (Debian bookworm: glibc, Linux UAPI, and other -dev packages)",
          "licence": "mixed free-software licences, per file headers (GPL, LGPL, BSD, MIT and others)"},
    "swift": {"source": f".swift files at the latest tag of the bare git mirrors under {SWIFT_ROOT} (generated *.pb.swift and *+Generated files skipped)",
              "licence": "Apache-2.0 / MIT (per repository LICENSE)"},
    "english": {"source": "installed English man pages, sections 1-8 (/usr/share/man/man1..man8, gcloud* pages excluded), rendered with groff -Tutf8 -mandoc | col -bx",
                "licence": "various free licences (per page; GPL, BSD, MIT, Linux man-pages licence and others)"},
    "german": {"source": "German man pages: /usr/share/man/de plus the Debian package manpages-de 4.18.1-1, rendered with groff -k -Tutf8 -mandoc",
               "licence": "various free licences (manpages-de translations: GPL-3+; originals per page)"},
    "french": {"source": "French man pages: /usr/share/man/fr plus the Debian package manpages-fr 4.18.1-1, rendered with groff -k -Tutf8 -mandoc",
               "licence": "various free licences (manpages-fr translations: GPL-3+; originals per page)"},
    "math": {"source": "SYNTHETIC: seeded templated generator in tools/corpus/math_gen.py (arithmetic, linear equations with steps, fraction simplification, word problems)",
             "licence": "generated, CC0-1.0"},
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def norm_text(t):
    t = t.replace("\r\n", "\n").replace("\r", "\n")
    t = "\n".join(line.rstrip() for line in t.split("\n"))
    t = re.sub(r"\n{3,}", "\n\n", t)
    return t.strip() + "\n"


def read_file(p):
    try:
        with open(p, "rb") as f:
            b = f.read(MAX_DOC * 2)
        return b.decode("utf-8", errors="replace")
    except OSError:
        return None


def gather_files(paths, rng, target):
    rng.shuffle(paths)
    docs, total = [], 0
    for p in paths:
        t = read_file(p)
        if not t or len(t.strip()) < 200:
            continue
        t = norm_text(t)[:MAX_DOC]
        docs.append((p, t))
        total += len(t)
        if total >= target:
            break
    return docs


# ---------------- python ----------------
def domain_python(rng):
    paths = []
    for root, dirs, files in os.walk(PY_LIB):
        dirs[:] = sorted(d for d in dirs if d not in ("test", "tests", "idle_test", "site-packages", "__pycache__")
                         and not d.startswith("config-"))
        for f in sorted(files):
            if f.endswith(".py") and not f.startswith("test_"):
                paths.append(os.path.join(root, f))
    paths.sort()
    return gather_files(paths, rng, GATHER_TARGET)


# ---------------- c ----------------
def domain_c(rng):
    paths = sorted(p for p in glob.glob("/usr/include/**/*.h", recursive=True) if os.path.isfile(p))
    return gather_files(paths, rng, GATHER_TARGET)


# ---------------- swift ----------------
def _git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, timeout=60).stdout


def domain_swift(rng):
    repos = sorted(os.path.dirname(h) for h in glob.glob(f"{SWIFT_ROOT}/*/*/HEAD"))
    repos = [r for r in repos if os.path.isdir(os.path.join(r, "objects"))]
    per_repo_cap = 400_000
    candidates = []  # (repo, tag, path)
    for r in repos:
        tags = _git(r, "tag", "--sort=-v:refname").decode().split()
        ref = tags[0] if tags else "HEAD"
        names = _git(r, "ls-tree", "-r", "--name-only", ref).decode().splitlines()
        names = [n for n in names if n.endswith(".swift") and not n.endswith(".pb.swift")
                 and "Generated" not in n and "generated" not in n.lower().split("/")[-1]]
        rng.shuffle(names)
        candidates.append((r, ref, names))
    docs, total = [], 0
    # round-robin over repos so no repository dominates
    rng.shuffle(candidates)
    per_repo = {r: 0 for r, _, _ in candidates}
    idx = {r: 0 for r, _, _ in candidates}
    active = list(candidates)
    while active and total < GATHER_TARGET:
        nxt = []
        for r, ref, names in active:
            if idx[r] >= len(names) or per_repo[r] >= per_repo_cap:
                continue
            n = names[idx[r]]
            idx[r] += 1
            b = _git(r, "show", f"{ref}:{n}")
            t = b.decode("utf-8", errors="replace")
            if len(t.strip()) >= 200 and "DO NOT EDIT" not in t[:2000]:
                t = norm_text(t)[:MAX_DOC]
                docs.append((f"{os.path.relpath(r, SWIFT_ROOT)}@{ref}:{n}", t))
                total += len(t)
                per_repo[r] += len(t)
            nxt.append((r, ref, names))
        active = nxt
    return docs


# ---------------- man pages ----------------
def render_man(path):
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8", MANWIDTH="100")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                src = f.read()
        else:
            with open(path, "rb") as f:
                src = f.read()
        if src.startswith(b".so ") and len(src) < 200:
            return path, None  # link page
        g = subprocess.run(["groff", "-k", "-Tutf8", "-mandoc", "-rLL=100n", "-P-cbou"], input=src,
                           capture_output=True, timeout=20, env=env)
        c = subprocess.run(["col", "-bx"], input=g.stdout, capture_output=True, timeout=20, env=env)
        t = c.stdout.decode("utf-8", errors="replace")
        return path, t
    except Exception:
        return path, None


def render_pages(paths, target):
    docs, total = [], 0
    with Pool(2) as pool:
        for path, t in pool.imap(render_man, paths, chunksize=8):
            if not t or len(t.strip()) < 300:
                continue
            t = norm_text(t)[:MAX_DOC]
            docs.append((path, t))
            total += len(t)
            if total >= target:
                pool.terminate()
                break
    return docs


def domain_english(rng):
    paths = []
    for s in range(1, 9):
        for p in sorted(glob.glob(f"/usr/share/man/man{s}/*")):
            if os.path.basename(p).startswith("gcloud") or not os.path.isfile(p) or os.path.islink(p):
                continue
            paths.append(p)
    rng.shuffle(paths)
    return render_pages(paths, GATHER_TARGET)


def _translated(lang, out, rng):
    debdir = os.path.join(out, "debs")
    os.makedirs(debdir, exist_ok=True)
    debs = glob.glob(os.path.join(debdir, f"manpages-{lang}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", f"manpages-{lang}"], cwd=debdir, check=True)
        debs = glob.glob(os.path.join(debdir, f"manpages-{lang}_*.deb"))
    xdir = os.path.join(out, "debs", f"x-{lang}")
    if not os.path.isdir(xdir):
        subprocess.run(["dpkg-deb", "-x", debs[0], xdir], check=True)
    paths = []
    for root in (f"/usr/share/man/{lang}", os.path.join(xdir, f"usr/share/man/{lang}")):
        for p in sorted(glob.glob(f"{root}/man*/*")):
            if os.path.isfile(p) and not os.path.islink(p):
                paths.append(p)
    # dedupe by basename (installed page and deb page may be the same)
    seen, uniq = set(), []
    for p in paths:
        b = os.path.basename(p)
        if b in seen:
            continue
        seen.add(b)
        uniq.append(p)
    rng.shuffle(uniq)
    return render_pages(uniq, GATHER_TARGET)


# ---------------- math ----------------
def domain_math(rng):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from math_gen import gen_document
    docs, total, i = [], 0, 0
    while total < GATHER_TARGET:
        t = norm_text(gen_document(rng))
        docs.append((f"math-{i:06d}", t))
        total += len(t)
        i += 1
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="work-data")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--domains", default=",".join(DOMAINS))
    args = ap.parse_args()
    cdir = os.path.join(args.out, "corpus")
    os.makedirs(cdir, exist_ok=True)
    info_path = os.path.join(cdir, "sources.json")
    info = json.load(open(info_path)) if os.path.exists(info_path) else {}
    for d in args.domains.split(","):
        rng = random.Random(f"{args.seed}-{d}")
        t0 = time.time()
        if d in ("german", "french"):
            docs = _translated({"german": "de", "french": "fr"}[d], args.out, rng)
        else:
            docs = globals()[f"domain_{d}"](rng)
        # exact dedup
        seen, uniq = set(), []
        for i, t in docs:
            h = hashlib.sha256(t.encode()).hexdigest()
            if h in seen:
                continue
            seen.add(h)
            uniq.append((i, t))
        ndup = len(docs) - len(uniq)
        rng.shuffle(uniq)
        splits = {"heldout": [], "calib": [], "train": []}
        sizes = {"heldout": 0, "calib": 0, "train": 0}
        for i, t in uniq:
            if sizes["heldout"] < HELDOUT_TARGET:
                s = "heldout"; t = t[:MAX_EVAL_DOC]
            elif sizes["calib"] < CALIB_TARGET:
                s = "calib"; t = t[:MAX_EVAL_DOC]
            elif sizes["train"] < TRAIN_CAP:
                s = "train"; t = t[:TRAIN_CAP - sizes["train"]]
            else:
                break
            splits[s].append((i, t))
            sizes[s] += len(t)
        os.makedirs(os.path.join(cdir, d), exist_ok=True)
        for s, lst in splits.items():
            with open(os.path.join(cdir, d, f"{s}.jsonl"), "w") as f:
                for i, t in lst:
                    f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
        info[d] = dict(SOURCES[d], documents_gathered=len(docs), exact_duplicates_removed=ndup,
                       **{f"{s}_docs": len(splits[s]) for s in splits},
                       **{f"{s}_chars": sizes[s] for s in sizes}, seed=args.seed)
        log(d, f"{time.time()-t0:.1f}s", json.dumps({k: v for k, v in info[d].items() if k.endswith(('docs', 'chars'))}))
        json.dump(info, open(info_path, "w"), indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
