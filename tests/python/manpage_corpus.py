#!/usr/bin/env python3
"""scripts/make_manpage_corpus.py on a handful of pages: the files gr_jsonl reads are valid.

    manpage_corpus.py SCRIPT WORKDIR [SCULPT_BIN]

1. A generated folder of roff pages (man(7), mdoc(7), pod2man-style with macro definitions and
   conditionals, a .so redirect, a symbolic link, no DESCRIPTION, too short, a copy of another
   page's description, a name prefix over --max-per-prefix): the skip counts, the stripped text
   and the NAME queries are what the pages say.
2. The same on /usr/share/man/man1 with --docs 20 when this machine has manual pages.
Every corpus: JSON objects with string fields on every line, doc_ids unique, every query's
doc_id a document, no test query equal to a training query, the same files from a second run
with the same seed. With SCULPT_BIN, configs/gr/manpages/teacher.yaml trains 3 steps on the
generated corpus (so gr_jsonl reads it).
"""
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys

FAILS = []


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg)


def read_jsonl(path, keys):
    rows = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except ValueError as e:
                check(False, f"{path}:{no}: not JSON: {e}")
                continue
            check(isinstance(row, dict), f"{path}:{no}: not an object")
            for k in keys:
                check(isinstance(row.get(k), str) and row[k] != "",
                      f"{path}:{no}: \"{k}\" missing, empty or not a string")
            rows.append(row)
    return rows


def check_corpus(out, docs, new_docs, doc_words):
    d = read_jsonl(os.path.join(out, "docs.jsonl"), ["doc_id", "text"])
    n = read_jsonl(os.path.join(out, "new_docs.jsonl"), ["doc_id", "text"])
    train = read_jsonl(os.path.join(out, "queries.jsonl"), ["query", "doc_id"])
    test = read_jsonl(os.path.join(out, "test_queries.jsonl"), ["query", "doc_id"])
    names = read_jsonl(os.path.join(out, "test_names.jsonl"), ["query", "doc_id"])
    spans = read_jsonl(os.path.join(out, "test_spans.jsonl"), ["query", "doc_id"])
    check(len(d) == docs and len(n) == new_docs, f"{out}: {len(d)} + {len(n)} documents, "
          f"{docs} + {new_docs} asked for")
    ids = [r["doc_id"] for r in d + n]
    check(len(set(ids)) == len(ids), f"{out}: a doc_id appears twice")
    texts = [r["text"] for r in d + n]
    check(len(set(texts)) == len(texts), f"{out}: two documents have the same text")
    for r in d + n:
        check(re.fullmatch(r"[a-z0-9]+( [a-z0-9]+)*", r["text"]) is not None,
              f"{out}: {r['doc_id']}: text is not lowercase words")
        check(len(r["text"].split()) <= doc_words, f"{out}: {r['doc_id']}: over {doc_words} words")
    known = set(ids)
    for q in train + test:
        check(q["doc_id"] in known, f"{out}: query of an unknown doc_id {q['doc_id']}")
    train_texts = {q["query"] for q in train}
    leaked = [q["query"] for q in test if q["query"] in train_texts]
    check(not leaked, f"{out}: test queries equal to training queries: {leaked[:3]}")
    check(sorted(map(json.dumps, names + spans)) == sorted(map(json.dumps, test)),
          f"{out}: test_names + test_spans is not test_queries")
    check(len(train) >= docs + new_docs and len(spans) > 0, f"{out}: too few queries")
    old = {r["doc_id"] for r in d}
    check(any(q["doc_id"] not in old for q in train) or new_docs == 0,
          f"{out}: no training query of a new document")
    return d, n, train, test


def run(script, *args):
    r = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    print(r.stdout, r.stderr, sep="", end="")
    return r


# ---- generated pages ----------------------------------------------------------------------

def fixture(folder):
    rng = random.Random(7)
    syl = ["ka", "lo", "mi", "ter", "zu", "ran", "pe", "dol", "vix", "no", "sa", "qui", "bre"]
    vocab = sorted({"".join(rng.choice(syl) for _ in range(rng.randint(2, 3)))
                    for _ in range(400)})

    def words(k):
        return " ".join(rng.choice(vocab) for _ in range(k))

    def put(name, text):
        with gzip.open(os.path.join(folder, name + ".gz"), "wt", encoding="utf-8") as f:
            f.write(text)

    os.makedirs(folder)
    expected = {}
    for i in range(30):  # plain man(7) pages with font escapes and option lists
        desc = words(40)
        w = desc.split()
        put(f"tool{i:02d}.1",
            f'.\\" comment\n.TH TOOL{i} 1\n.SH NAME\ntool{i:02d} \\- {" ".join(w[:3])} helper\n'
            f".SH SYNOPSIS\n.B tool{i:02d}\n[\\fIOPTION\\fR]\n.SH DESCRIPTION\n"
            f"\\fB{w[0]}\\fR {' '.join(w[1:20])}\n.PP\n.TP\n\\fB\\-x\\fR, \\fB\\-\\-long\\fR\n"
            f"{' '.join(w[20:30])}\n.BR {w[30]} ({w[31]})\n{' '.join(w[32:])}\n.SH SEE ALSO\nnothing\n")
        expected[f"tool{i:02d}.1"] = (" ".join(w[:20] + ["x", "long"] + w[20:30] +
                                                [w[30], w[31]] + w[32:]),
                                       f"{' '.join(w[:3])} helper")
    w = words(40).split()
    put("bsdtool.1",  # mdoc(7)
        f".Dd $Mdocdate$\n.Dt BSDTOOL 1\n.Os\n.Sh NAME\n.Nm bsdtool\n.Nd {' '.join(w[:4])}\n"
        f".Sh DESCRIPTION\nThe\n.Nm\nutility {' '.join(w[4:20])}\n.Bl -tag -width Ds\n"
        f".It Fl v\n{' '.join(w[20:])}\n.El\n.Sh SEE ALSO\n.Xr ls 1\n")
    expected["bsdtool.1"] = (" ".join(["the", "bsdtool", "utility"] + w[4:20] + ["v"] + w[20:]),
                             " ".join(w[:4]))
    w = words(40).split()
    put("podtool.1",  # pod2man-style: macro definitions, conditionals, strings, index entries
        '.de Vb\n.ft CW\n.nf\n..\n.ie n \\{\\\n.    ds C` ""\n.\\}\n.el \\{\\\n.    ds C` `\n.\\}\n'
        f'.IX Title "PODTOOL 1"\n.SH "NAME"\npodtool \\- {" ".join(w[:3])}\n.SH "DESCRIPTION"\n'
        f'.IX Header "DESCRIPTION"\n\\*(C`{w[3]}\\*(C\' {" ".join(w[4:25])}\\s-1\\s0\n'
        f'.IP "\\(bu" 4\n{" ".join(w[25:])}\n')
    expected["podtool.1"] = (" ".join(w[3:]), " ".join(w[:3]))
    put("alias.1", ".so man1/tool00.1\n")
    os.symlink("tool01.1.gz", os.path.join(folder, "link.1.gz"))
    put("nodesc.1", f".TH NODESC 1\n.SH NAME\nnodesc \\- none\n.SH OPTIONS\n{words(40)}\n")
    put("short.1", f".TH SHORT 1\n.SH NAME\nshort \\- brief\n.SH DESCRIPTION\n{words(5)}\n")
    src = gzip.open(os.path.join(folder, "tool02.1.gz"), "rt").read()
    put("copy.1", src.replace("tool02", "copy"))  # the same description under another name
    for i in range(4):  # 2 over --max-per-prefix 2
        put(f"gcloud_group_{i}.1",
            f".TH X 1\n.SH NAME\ngcloud group {i} \\- a group\n.SH DESCRIPTION\n{words(30)}\n")
    return expected


def main():
    script, work = sys.argv[1], sys.argv[2]
    sculpt = sys.argv[3] if len(sys.argv) > 3 else ""
    shutil.rmtree(work, ignore_errors=True)
    pages = os.path.join(work, "pages")
    expected = fixture(pages)
    # 34 usable pages (30 tools, bsdtool, podtool, 2 gcloud; copy.1 or tool02.1): all asked for,
    # so every page is read and every skip reason is met.
    args = ["--man-dir", pages, "--docs", "30", "--new-docs", "4", "--max-per-prefix", "2",
            "--min-words", "20", "--doc-words", "48"]
    out1, out2 = os.path.join(work, "out1"), os.path.join(work, "out2")
    r = run(script, *args, "--out", out1)
    check(r.returncode == 0, f"the script failed on the generated pages ({r.returncode})")
    if r.returncode == 0:
        check_corpus(out1, 30, 4, 48)
        stats = json.load(open(os.path.join(out1, "corpus.json")))
        sk = stats["skipped"]
        check(sk["redirect"] == 1 and sk["duplicate"] == 1 and sk["no_description"] == 1 and
              sk["short"] == 1 and sk["prefix_cap"] == 2, f"skip counts {sk}")
        check(sk["pages"] == len(os.listdir(pages)) - 1, f"the symbolic link was read: {sk}")
        docs = {x["doc_id"]: x for x in read_jsonl(os.path.join(out1, "docs.jsonl"), []) +
                read_jsonl(os.path.join(out1, "new_docs.jsonl"), [])}
        check(not any(k in docs for k in ("alias.1", "link.1", "nodesc.1", "short.1")),
              f"a page that should be skipped is a document: {sorted(docs)}")
        check(not ("copy.1" in docs and "tool02.1" in docs), "a duplicate description was kept")
        check(sum(k.startswith("gcloud") for k in docs) <= 2, "over --max-per-prefix")
        queries = read_jsonl(os.path.join(out1, "queries.jsonl"), []) + \
            read_jsonl(os.path.join(out1, "test_names.jsonl"), [])
        name_q = {q["doc_id"]: q["query"] for q in queries if q.get("kind") == "name"}
        compared = 0
        for doc_id, (text, name) in expected.items():
            if doc_id not in docs:
                continue
            compared += 1
            check(docs[doc_id]["text"] == text,
                  f"{doc_id}: text\n  got  {docs[doc_id]['text']}\n  want {text}")
            check(name_q.get(doc_id) == name, f"{doc_id}: NAME query {name_q.get(doc_id)!r}, "
                  f"want {name!r}")
        check(compared >= len(expected) - 1, f"{compared} of {len(expected)} pages compared")
        r = run(script, *args[:3], "35", *args[4:], "--out", os.path.join(work, "too_many"))
        check(r.returncode != 0 and "34 usable pages" in r.stderr,
              "asking for more pages than there are is not an error naming the count")
        run(script, *args, "--out", out2)
        for f in sorted(os.listdir(out1)):
            if f != "corpus.json":
                check(open(os.path.join(out1, f)).read() == open(os.path.join(out2, f)).read(),
                      f"{f} differs between two runs with the same seed")
        if sculpt:
            c = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(script))),
                             "configs", "gr", "manpages", "teacher.yaml")
            cmd = [sculpt, "train", c, f"data.docs_file={out1}/docs.jsonl",
                   f"data.new_docs_file={out1}/new_docs.jsonl",
                   f"data.queries_file={out1}/queries.jsonl",
                   f"data.test_queries_file={out1}/test_queries.jsonl",
                   "trainer.max_steps=3", "model.layers=1", "model.decoder_layers=1",
                   f"run.output_dir={work}/run", "--log-level", "warn"]
            t = subprocess.run(cmd, capture_output=True, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
            print(t.stderr[-2000:], end="")
            check(t.returncode == 0 and os.path.exists(f"{work}/run/summary.json"),
                  f"sculpt train on the generated corpus failed ({t.returncode})")
    system = "/usr/share/man/man1"
    if os.path.isdir(system) and len(os.listdir(system)) >= 200:
        out3 = os.path.join(work, "system")
        r = run(script, "--docs", "20", "--new-docs", "5", "--out", out3)
        check(r.returncode == 0, f"the script failed on {system} ({r.returncode})")
        if r.returncode == 0:
            check_corpus(out3, 20, 5, 48)
    else:
        print(f"{system}: fewer than 200 pages here; only the generated pages were checked")
    if FAILS:
        print(f"{len(FAILS)} checks failed")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
