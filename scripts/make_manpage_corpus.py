#!/usr/bin/env python3
"""A generative-retrieval corpus from the manual pages installed on this machine (gr_jsonl files).

    python3 scripts/make_manpage_corpus.py [--out build/manpages] [--docs 500] [--new-docs 50]

One document per page of section 1 (--man-dir, default /usr/share/man/man1; the language
subfolders of /usr/share/man are not read): its DESCRIPTION section as plain text, lowercased
into words of [a-z0-9] (gr_jsonl splits on whitespace), cut to --doc-words words; its doc_id is
the file name without .gz ("ls.1"). The roff sources (man(7) and mdoc(7) macros) are read and
stripped here, so neither man nor groff is needed and the text does not depend on their version.

Skipped: symbolic links and `.so` redirects (aliases), pages without a DESCRIPTION section or
with fewer than --min-words words in it, and pages whose document text is the same as an
earlier page's (aliases installed as copies). At most --max-per-prefix pages share the leading
run of letters and digits of their name ("gcloud_compute_...", "git-add"): otherwise the 16,000
generated gcloud pages of a Debian image with the Google Cloud CLI would be 90% of the corpus.

Pages are taken in a seeded random order (--seed): the first --docs accepted are the documents,
the next --new-docs the documents that arrive later (step e of configs/gr). Queries, per page:
  name  the NAME line's description ("ls - list directory contents" -> "list directory
        contents"); held out as a test query for a seeded --name-test share of the pages, a
        training query for the others;
  span  --train-spans training and --test-spans test queries (--new-test-spans for the later
        pages, so their Hits@1 rests on more queries), each a span of --span-min to
        --span-max words of the document with words dropped (--drop) and swapped with their
        right neighbour (--swap), like gr_synthetic's queries.
A test query is never the text of a training query (of any page): such a candidate is drawn
again (up to 20 times, then left out). Test spans and training spans are drawn from separate
random streams, so --test-spans does not change the training queries.

Files written to --out:
  docs.jsonl          {"doc_id", "text", "name"}  the documents (gr_jsonl data.docs_file)
  new_docs.jsonl      the same for the later documents (data.new_docs_file)
  queries.jsonl       {"query", "doc_id", "kind"}  training queries (data.queries_file)
  test_queries.jsonl  every held-out query (data.test_queries_file)
  test_names.jsonl    the held-out NAME queries alone, test_spans.jsonl the spans alone
  corpus.json         the options and the counts (also printed)
"""
import argparse
import gzip
import json
import os
import random
import re
import sys

# ---- roff to plain text -------------------------------------------------------------------

SPECIAL = {  # \(xx and \[name] characters that carry text; every other one becomes a space
    "hy": "-", "mi": "-", "en": "-", "em": " - ", "aq": "'", "cq": "'", "oq": "'", "dq": '"',
    "lq": '"', "rq": '"', "ga": "`", "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "ba": "|",
    "co": "(c)", "rg": "(r)", "tm": "(tm)", "mu": "x", "pl": "+", "eq": "=", "lt": "<", "gt": ">",
    "ua": "^", "da": "v", "->": "->", "<-": "<-", "fm": "'", "sd": '"', "at": "@", "sh": "#",
    "Do": "$", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "ct": "c", "de": " degrees",
}

# mdoc macros that may appear among a line's arguments (called macros); their names are not text.
MDOC_CALLABLE = set(
    "Ac Ad An Ao Ap Aq Ar At Bc Bf Bo Bq Brc Bro Brq Bsx Bx Cd Cm Dc Do Dq Dv Ec Em En Eo Er Ev "
    "Fa Fc Fl Fn Fo Fr Ft Fx Ic In Li Lk Ms Mt Nm No Ns Nx Oc Oo Op Ox Pa Pc Pf Po Pq Qc Ql Qo Qq "
    "Sc So Sq St Sx Sy Tn Ux Va Vt Xc Xo Xr %A %B %C %D %I %J %N %O %P %Q %R %T %U %V".split())
# mdoc line macros whose line is layout or metadata, not text.
MDOC_SKIP = set("Dd Dt Os Bl El Bd Ed Bk Ek Pp Lp Rs Re Sm Bf Ef Db Ud Lb Hf".split())
# man(7) macros whose arguments are text: joined with spaces, or alternating fonts (no spaces).
MAN_TEXT = {"B", "I", "SM", "SB", "OP", "SY", "TQ", "Nm"}
MAN_ALTERNATING = {"BR", "BI", "IB", "IR", "RB", "RI"}


def _bracketed(s, i):
    """The name of an escape argument at s[i]: (xx, [name] or one character; (name, next index)."""
    if i >= len(s):
        return "", i
    if s[i] == "(":
        return s[i + 1:i + 3], i + 3
    if s[i] == "[":
        j = s.find("]", i + 1)
        j = len(s) if j < 0 else j
        return s[i + 1:j], j + 1
    return s[i], i + 1


def _delimited(s, i):
    """Skips a delimited escape argument at s[i] ('...'); the next index."""
    if i >= len(s):
        return i
    j = s.find(s[i], i + 1)
    return len(s) if j < 0 else j + 1


def special_char(name):
    if name in SPECIAL:
        return SPECIAL[name]
    if name.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
        try:
            return chr(int(name[1:], 16))
        except ValueError:
            return " "
    if len(name) == 2 and name[0] in "'`^:~,\"" and name[1].isalpha():
        return name[1]  # accented letters: \('e
    if len(name) == 2 and name[1] in "'`^:~,\"" and name[0].isalpha():
        return name[0]
    return " "


def unescape(s, strings):
    """A line's text with roff escapes replaced or removed."""
    out = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break
        e = s[i + 1]
        i += 2
        if e in "\"#":  # comment to the end of the line
            break
        if e == "f" or e == "F":  # font
            _, i = _bracketed(s, i)
        elif e == "s":  # size: \s0 \s-1 \s+2 \s(12 \s[12] \s'12'
            if i < n and s[i] in "+-":
                i += 1
            if i < n and s[i] in "(['":
                if s[i] == "'":
                    i = _delimited(s, i)
                else:
                    _, i = _bracketed(s, i)
            elif i < n and s[i].isdigit():
                i += 1
        elif e == "(" or e == "[":
            name, i = _bracketed(s, i - 1)
            out.append(special_char(name))
        elif e == "*":  # a string
            name, i = _bracketed(s, i)
            out.append(strings.get(name, ""))
        elif e in "ngkmMVY$":  # registers, colours, environment, arguments: no text
            if e == "n" and i < n and s[i] in "+-":
                i += 1
            _, i = _bracketed(s, i)
        elif e in "hvwlLoXZbDxRABCNSHT":  # escapes with a delimited argument
            if e == "C" or e == "N":
                out.append(" ")
            i = _delimited(s, i)
        elif e == "z":
            pass  # zero-width: the next character is printed
        elif e in "e\\":
            out.append("\\")
        elif e in "-":
            out.append("-")
        elif e in " ~0t":
            out.append(" ")
        elif e in "'`":
            out.append("'")
        elif e in "&|^)%:,/cdurpa{}!?":
            pass
        else:
            out.append(e)
    return "".join(out)


def split_args(s):
    """Macro arguments: whitespace-separated, "double quoted" ones may hold spaces ("" = "\")."""
    args, i, n = [], 0, len(s)
    while i < n:
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            break
        if s[i] == '"':
            i += 1
            a = []
            while i < n:
                if s[i] == '"':
                    if i + 1 < n and s[i + 1] == '"':
                        a.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                a.append(s[i])
                i += 1
            args.append("".join(a))
        else:
            j = i
            while j < n and s[j] not in " \t":
                if s[j] == "\\" and j + 1 < n:
                    j += 1
                j += 1
            args.append(s[i:j])
            i = j
    return args


def mdoc_text(args, name, strings):
    """The text of an mdoc line's arguments: called macros dropped, Fl flags as -x, Nm as the name."""
    out = []
    k = 0
    while k < len(args):
        a = args[k]
        if a in MDOC_CALLABLE:
            nxt = args[k + 1] if k + 1 < len(args) else None
            if a == "Fl":
                if nxt is not None and nxt not in MDOC_CALLABLE:
                    out.append("-" + unescape(nxt, strings))
                    k += 2
                    continue
                out.append("-")
            elif a == "Nm" and (nxt is None or nxt in MDOC_CALLABLE):
                out.append(name)
            k += 1
            continue
        out.append(unescape(a, strings))
        k += 1
    return " ".join(out)


def parse_page(source, name):
    """Sections of a roff page as {"NAME": text, "DESCRIPTION": text, ...} (upper-case keys)."""
    strings = {"R": "(r)", "Tm": "(tm)", "lq": '"', "rq": '"', "L\"": '"', "R\"": '"',
               "C`": '"', "C'": '"', "PI": "pi"}
    lines = source.replace("\r\n", "\n").split("\n")
    # Joined continuation lines (a trailing unescaped backslash).
    joined, buf = [], ""
    for line in lines:
        m = re.search(r"(\\+)$", line)
        if m and len(m.group(1)) % 2 == 1:
            buf += line[:-1]
            continue
        joined.append(buf + line)
        buf = ""
    if buf:
        joined.append(buf)
    sections = {}
    section = None
    pending_heading = False
    text = []
    skip_until = None   # end line of a skipped block (.de ... .., .TS ... .TE)
    brace_depth = 0     # inside a skipped conditional \{ ... \}
    mdoc = any(re.match(r"[.']\s*(Dd|Sh)\b", l) for l in joined[:400])

    def flush():
        if section is not None:
            sections.setdefault(section, [])
            sections[section].extend(text)
        text.clear()

    for raw in joined:
        if brace_depth > 0:
            brace_depth += raw.count("\\{") - raw.count("\\}")
            continue
        if skip_until is not None:
            if raw.strip() == skip_until or raw.strip().startswith(skip_until + " "):
                skip_until = None
            continue
        if raw[:1] in (".", "'"):
            body = raw[1:].lstrip(" \t")
            if body.startswith('\\"') or body == "" or body.startswith("\\#"):
                continue
            m = re.match(r"(\S+)\s*(.*)$", body)
            macro, rest = m.group(1), m.group(2)
            if macro.startswith("\\"):
                continue
            if macro in ("de", "de1", "am", "am1", "dei", "ami"):
                skip_until = ".."
                continue
            if macro == "ig":
                end = rest.split()[0] if rest.split() else "."
                skip_until = "." + end
                continue
            if macro in ("TS", "EQ", "PS", "[", "G1"):
                skip_until = {"TS": ".TE", "EQ": ".EN", "PS": ".PE", "[": ".]", "G1": ".G2"}[macro]
                continue
            if macro in ("if", "ie", "el", "while", "nr", "rr", "rm", "rn", "als", "tr", "so",
                         "mso", "cc", "ec", "eo", "char", "de", "do", "IX", "Vb", "Ve", "UR", "MT",
                         "UE", "ME", "TH", "Dd", "Dt", "Os"):
                if "\\{" in raw:
                    brace_depth = raw.count("\\{") - raw.count("\\}")
                continue
            if macro == "ds":
                parts = rest.split(None, 1)
                if parts:
                    value = parts[1] if len(parts) > 1 else ""
                    strings[parts[0]] = unescape(value[1:] if value.startswith('"') else value,
                                                 strings)
                continue
            if macro in ("SH", "Sh"):
                flush()
                heading = unescape(" ".join(split_args(rest)), strings).strip()
                if heading:
                    section = heading.upper()
                    pending_heading = False
                else:
                    pending_heading = True
                continue
            if macro in ("SS", "Ss"):
                continue
            args = split_args(rest)
            if mdoc and (macro in MDOC_CALLABLE or macro in ("Nd", "It", "D1", "Dl") or
                         macro in MDOC_SKIP):
                if macro in MDOC_SKIP:
                    continue
                if macro == "Nd":
                    text.append("- " + " ".join(unescape(a, strings) for a in args))
                    continue
                if macro == "Nm" and section == "NAME":
                    text.append(" ".join(unescape(a, strings) for a in args) or name)
                    continue
                text.append(mdoc_text([macro] + args if macro in MDOC_CALLABLE else args,
                                      name, strings))
                continue
            if macro in MAN_TEXT:
                text.append(" ".join(unescape(a, strings) for a in args))
            elif macro in MAN_ALTERNATING:
                text.append("".join(unescape(a, strings) for a in args))
            elif macro == "IP" and args:
                tag = unescape(args[0], strings)
                if re.search(r"[A-Za-z0-9]", tag):
                    text.append(tag)
            # every other request or macro (paragraphs, indents, fonts, spacing, user macros)
            # carries no text of its own
            continue
        line = unescape(raw, strings)
        if pending_heading:
            if line.strip():
                flush()
                section = line.strip().upper()
                pending_heading = False
            continue
        text.append(line)
    flush()
    return {k: " ".join(" ".join(v).split()) for k, v in sections.items()}


def words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def name_description(name_text):
    """The description part of a NAME line ("ls, dir - list directory contents")."""
    m = re.search(r"\s[-\u2013\u2014]+\s", " " + name_text + " ")
    if not m:
        return ""
    return (" " + name_text + " ")[m.end():].strip()


def read_source(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


# ---- the corpus ---------------------------------------------------------------------------

def noisy_span(doc, rng, span_min, span_max, drop, swap):
    """A span of the document's words with drops and swaps; at least min(3, span_min) words."""
    while True:
        length = rng.randint(span_min, min(span_max, len(doc)))
        start = rng.randint(0, len(doc) - length)
        q = [w for w in doc[start:start + length] if rng.random() >= drop]
        if len(q) >= min(3, span_min):
            break
    for k in range(len(q) - 1):
        if rng.random() < swap:
            q[k], q[k + 1] = q[k + 1], q[k]
    return " ".join(q)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--man-dir", default="/usr/share/man/man1",
                    help="folder of roff pages (.gz or plain); default /usr/share/man/man1")
    ap.add_argument("--out", default="build/manpages", help="output folder (default build/manpages)")
    ap.add_argument("--docs", type=int, default=500, help="documents of the corpus")
    ap.add_argument("--new-docs", type=int, default=50, help="documents that arrive later")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--doc-words", type=int, default=48, help="words kept per document")
    ap.add_argument("--min-words", type=int, default=24,
                    help="pages with fewer DESCRIPTION words are skipped")
    ap.add_argument("--max-per-prefix", type=int, default=8,
                    help="pages per leading name part (gcloud_*, git-*); 0: no limit")
    ap.add_argument("--train-spans", type=int, default=30, help="training span queries per page")
    ap.add_argument("--test-spans", type=int, default=2, help="test span queries per page")
    ap.add_argument("--new-test-spans", type=int, default=8,
                    help="test span queries per later page (fewer pages: more queries each)")
    ap.add_argument("--span-min", type=int, default=4)
    ap.add_argument("--span-max", type=int, default=10)
    ap.add_argument("--drop", type=float, default=0.1, help="per-word probability of a drop")
    ap.add_argument("--swap", type=float, default=0.1, help="per-word probability of a swap")
    ap.add_argument("--name-test", type=float, default=0.5,
                    help="share of pages whose NAME query is held out (a test query)")
    a = ap.parse_args(argv)
    if a.docs < 2 or a.new_docs < 0:
        ap.error("--docs must be >= 2 and --new-docs >= 0")
    if not 1 <= a.span_min <= a.span_max or a.min_words < a.span_min or a.doc_words < a.min_words:
        ap.error("need 1 <= --span-min <= --span-max, --span-min <= --min-words <= --doc-words")
    if not os.path.isdir(a.man_dir):
        sys.exit(f"make_manpage_corpus: {a.man_dir} is not a folder")

    files = sorted(f for f in os.listdir(a.man_dir)
                   if os.path.isfile(os.path.join(a.man_dir, f)) and
                   not os.path.islink(os.path.join(a.man_dir, f)))
    random.Random(a.seed).shuffle(files)
    counts = {"pages": len(files), "redirect": 0, "no_description": 0, "short": 0,
              "duplicate": 0, "prefix_cap": 0, "unreadable": 0}
    want = a.docs + a.new_docs
    pages, seen_text, per_prefix = [], set(), {}
    for f in files:
        if len(pages) == want:
            break
        doc_id = f[:-3] if f.endswith(".gz") else f
        base = doc_id.rsplit(".", 1)[0] if "." in doc_id else doc_id
        prefix = (re.match(r"[A-Za-z0-9]*", base).group(0) or base).lower()
        if a.max_per_prefix and per_prefix.get(prefix, 0) >= a.max_per_prefix:
            counts["prefix_cap"] += 1
            continue
        try:
            source = read_source(os.path.join(a.man_dir, f))
        except (OSError, EOFError, gzip.BadGzipFile, ValueError):
            counts["unreadable"] += 1
            continue
        if re.match(r"\s*\.so\s", source) and len(source.strip().split("\n")) <= 3:
            counts["redirect"] += 1
            continue
        sec = parse_page(source, base)
        desc = sec.get("DESCRIPTION")
        if desc is None:
            counts["no_description"] += 1
            continue
        ws = words(desc)
        if len(ws) < a.min_words:
            counts["short"] += 1
            continue
        ws = ws[:a.doc_words]
        text = " ".join(ws)
        if text in seen_text:
            counts["duplicate"] += 1
            continue
        seen_text.add(text)
        per_prefix[prefix] = per_prefix.get(prefix, 0) + 1
        name_line = sec.get("NAME", "")
        pages.append({"doc_id": doc_id, "words": ws, "name_line": name_line,
                      "name_query": " ".join(words(name_description(name_line)))})
    if len(pages) < want:
        sys.exit(f"make_manpage_corpus: {a.man_dir} gave {len(pages)} usable pages, "
                 f"{want} asked for (--docs {a.docs} --new-docs {a.new_docs}); "
                 f"skipped: {counts}")

    # Training queries first (their texts are what a test query must not be), each page from
    # its own seeded stream; then the test queries from streams of their own.
    train, names_test = [], {}
    for k, p in enumerate(pages):
        rng = random.Random(f"{a.seed}/train/{p['doc_id']}")
        held_out = rng.random() < a.name_test
        if p["name_query"]:
            if held_out:
                names_test[k] = p["name_query"]
            else:
                train.append({"query": p["name_query"], "doc_id": p["doc_id"], "kind": "name"})
        for _ in range(a.train_spans):
            q = noisy_span(p["words"], rng, a.span_min, a.span_max, a.drop, a.swap)
            if q:
                train.append({"query": q, "doc_id": p["doc_id"], "kind": "span"})
    train_texts = {q["query"] for q in train}
    test, dropped = [], 0
    for k, p in enumerate(pages):
        rng = random.Random(f"{a.seed}/test/{p['doc_id']}")
        mine = set()
        if k in names_test:
            if names_test[k] in train_texts:
                dropped += 1
            else:
                test.append({"query": names_test[k], "doc_id": p["doc_id"], "kind": "name"})
                mine.add(names_test[k])
        for _ in range(a.test_spans if k < a.docs else a.new_test_spans):
            for _try in range(20):
                q = noisy_span(p["words"], rng, a.span_min, a.span_max, a.drop, a.swap)
                if q and q not in train_texts and q not in mine:
                    break
            else:
                dropped += 1
                continue
            mine.add(q)
            test.append({"query": q, "doc_id": p["doc_id"], "kind": "span"})

    os.makedirs(a.out, exist_ok=True)

    def write(name, rows):
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    def doc_rows(ps):
        return [{"doc_id": p["doc_id"], "text": " ".join(p["words"]), "name": p["name_line"]}
                for p in ps]

    write("docs.jsonl", doc_rows(pages[:a.docs]))
    write("new_docs.jsonl", doc_rows(pages[a.docs:]))
    write("queries.jsonl", train)
    write("test_queries.jsonl", test)
    write("test_names.jsonl", [q for q in test if q["kind"] == "name"])
    write("test_spans.jsonl", [q for q in test if q["kind"] == "span"])
    old_ids = {p["doc_id"] for p in pages[:a.docs]}
    vocab = {w for p in pages[:a.docs] for w in p["words"]}
    stats = {
        "options": vars(a),
        "skipped": counts,
        "docs": a.docs,
        "new_docs": a.new_docs,
        "doc_words_mean": round(sum(len(p["words"]) for p in pages) / len(pages), 1),
        "vocab_old_docs": len(vocab),
        "train_queries": {"old": sum(q["doc_id"] in old_ids for q in train),
                          "new": sum(q["doc_id"] not in old_ids for q in train),
                          "name": sum(q["kind"] == "name" for q in train)},
        "test_queries": {"old": sum(q["doc_id"] in old_ids for q in test),
                         "new": sum(q["doc_id"] not in old_ids for q in test),
                         "name": sum(q["kind"] == "name" for q in test),
                         "span": sum(q["kind"] == "span" for q in test)},
        "test_queries_left_out": dropped,
    }
    with open(os.path.join(a.out, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1)
        f.write("\n")
    print(f"make_manpage_corpus: {a.man_dir}: {len(files)} pages read in seeded order, "
          f"skipped {counts['redirect']} redirects, {counts['no_description']} without "
          f"DESCRIPTION, {counts['short']} under {a.min_words} words, {counts['duplicate']} "
          f"duplicates, {counts['prefix_cap']} over --max-per-prefix, {counts['unreadable']} "
          f"unreadable")
    print(f"  documents {a.docs} + {a.new_docs} new, {stats['doc_words_mean']} words each "
          f"(mean), vocabulary of the old documents {len(vocab)} words")
    print(f"  training queries {len(train)} (old {stats['train_queries']['old']}, new "
          f"{stats['train_queries']['new']}; NAME {stats['train_queries']['name']})")
    print(f"  test queries {len(test)} (old {stats['test_queries']['old']}, new "
          f"{stats['test_queries']['new']}; NAME {stats['test_queries']['name']}, spans "
          f"{stats['test_queries']['span']}; {dropped} left out as equal to a training query)")
    print(f"  written to {a.out}")


if __name__ == "__main__":
    main()
