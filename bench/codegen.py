"""Plain code against the eval/exec-generated code it replaced, side by side in one run (issue 16).

    .venv/bin/python -m bench.codegen [--n 200000]

The indexer once built its per-table row converters (indexer/store.py) with eval and its per-event
readers (indexer/rawlogs.py) with exec. Both are plain closures now (indexer/rows.py,
indexer/rawlogs.py); the generated versions are kept HERE ONLY, as the reference this benchmark
times them against on the same inputs (and checks they give the same results). Figures go to
docs/benchmarks.md ("Plain code vs generated").
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from core.contracts import event_topic, load_abi
from indexer import fold as F
from indexer import rows as R
from indexer.decode import TYPED, DecodeError, MarketCreated, snake
from indexer.rawlogs import _body

# ---------------------------------------------------------------- the generated reference (do not use)


def generated_record_writer(table: str) -> Callable[[int, Any], tuple[Any, ...]]:
    parts = []
    for name, kind in zip(R.COLUMNS[table], F.KINDS[table], strict=True):
        parts.append(f"(None if row.{name} is None else ts(row.{name}))" if kind == "time" else f"row.{name}")
    source = f"lambda chain_id, row: (chain_id, {', '.join(parts)})"
    fn: Callable[[int, Any], tuple[Any, ...]] = eval(source, {"ts": R.ts})
    return fn


def generated_record_reader(table: str, skip: int) -> Callable[[Any], F.Row]:
    parts = []
    for i, kind in enumerate(F.KINDS[table]):
        v = f"r[{i + skip}]"
        if kind == "time":
            parts.append(f"seconds({v})")
        elif kind == "int":
            parts.append(f"(None if {v} is None else int({v}))")
        else:
            parts.append(v)
    env = {"seconds": R.seconds, "cls": F.TABLES[table][0]}
    fn: Callable[[Any], F.Row] = eval(f"lambda r: cls({', '.join(parts)})", env)
    return fn


def generated_line_writer(table: str) -> Callable[[str, Any], str]:
    """Row -> its COPY text line (chain_id first), one generated expression per table: the backfill
    writes every row a batch changes, and a type dispatch per value (copy_text_payload) costs more."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(F.TABLES[table][0])}
    parts = []
    for name, kind in zip(R.COLUMNS[table], F.KINDS[table], strict=True):
        v = f"row.{name}"
        text = {
            "int": f"str({v})",
            "bool": f"('t' if {v} else 'f')",
            "bytes": f"BYTEA + {v}.hex()",
            "str": f"{v}.translate(ESC)",
            "time": f"time_text(ts({v}))",
        }[kind]
        parts.append(f"(NULL if {v} is None else {text})" if "None" in fields[name] else text)
    source = f"lambda chain, row: TAB.join((chain, {', '.join(parts)})) + NL"
    env = {
        "ts": R.ts,
        "time_text": R._time_text,
        "ESC": R._ESCAPES,
        "BYTEA": "\\\\x",
        "NULL": "\\N",
        "TAB": "\t",
        "NL": "\n",
    }
    fn: Callable[[str, Any], str] = eval(source, env)
    return fn


# (topics, data hex) -> (ABI field values, their COPY text columns joined by tabs)
Body = Callable[[Sequence[str], str], tuple[tuple[Any, ...], str]]


def generated_body(cls: type[Any], abi: dict[str, Any]) -> Body:
    """Generates the reader of one fixed-layout event (checked against the dataclass like decode's)."""
    inputs = abi["inputs"]
    if [snake(i["name"]) for i in inputs] != [f.name for f in dataclasses.fields(cls)][5:]:
        raise DecodeError(f"{cls.__name__} fields do not match abi/ inputs")
    n_topics = 1 + sum(1 for i in inputs if i["indexed"])
    n_words = sum(1 for i in inputs if not i["indexed"])
    size = 2 + 64 * n_words
    lines = [
        "def body(t, d):",
        f"    if len(t) != {n_topics} or len(d) != {size}:",
        f"        raise DecodeError(f'{cls.__name__}: {{len(t)}} topics, {{(len(d) - 2) // 2}} data bytes;"
        f" abi/ expects {n_topics} and {size // 2 - 1}')",
    ]
    values, texts = [], []
    topic = word = 0
    for k, i in enumerate(inputs):
        v = f"v{k}"
        if i["indexed"]:
            topic += 1
            src = f"t[{topic}]"
            hexpart = f"t[{topic}][2:]"
        else:
            src = f"d[{2 + 64 * word}:{66 + 64 * word}]"
            hexpart = src
            word += 1
        kind = i["type"]
        if kind == "address":
            lines += [
                f"    a{k} = {hexpart}[24:]",
                f"    {v} = fromhex(a{k})",
                f"    if len({v}) != 20: raise ValueError",
            ]
            texts.append(f"'\\\\\\\\x' + a{k}")
        elif kind == "bool":
            lines.append(f"    {v} = {hexpart}[62:64] != '00'")  # the last byte, as decode reads it
            texts.append(f"('t' if {v} else 'f')")
        elif kind.startswith("uint"):
            lines.append(f"    {v} = int({src}, 16)")
            texts.append(f"str({v})")
        elif kind.startswith("int"):
            lines += [f"    {v} = int({src}, 16)", f"    if {v} >= {2**255}: {v} -= {2**256}"]
            texts.append(f"str({v})")
        elif kind == "bytes32":
            lines += [f"    h{k} = {hexpart}", f"    {v} = fromhex(h{k})"]
            lines.append(f"    if len({v}) != 32: raise ValueError('bytes32: 32 bytes of hex expected')")
            texts.append(f"'\\\\\\\\x' + h{k}")
        else:
            raise DecodeError(f"unsupported static type {kind}")
        values.append(v)
    lines.append(f"    return ({', '.join(values)},), '\\t'.join(({', '.join(texts)},))")
    scope: dict[str, Any] = {"DecodeError": DecodeError, "fromhex": bytes.fromhex}
    exec("\n".join(lines), scope)
    body: Body = scope["body"]
    return body


# ---------------------------------------------------------------- inputs


def word(kind: str, rng: random.Random) -> str:
    if kind == "address":
        return "00" * 12 + rng.randbytes(20).hex()
    if kind == "bool":
        return "00" * 31 + rng.choice(("00", "01"))
    if kind.startswith("int"):
        return (rng.getrandbits(255) if rng.random() < 0.5 else (1 << 256) - rng.getrandbits(100)).to_bytes(32).hex()
    if kind == "bytes32":
        return rng.randbytes(32).hex()
    return rng.getrandbits(rng.choice((64, 96, 128))).to_bytes(32).hex()


def raw_logs(abi: dict[str, Any], n: int, rng: random.Random) -> list[tuple[list[str], str]]:
    topic0 = "0x" + event_topic(abi).hex()
    out = []
    for _ in range(n):
        topics, data = [topic0], "0x"
        for i in abi["inputs"]:
            w = word(i["type"], rng)
            if i["indexed"]:
                topics.append("0x" + w)
            else:
                data += w
        out.append((topics, data))
    return out


def fold_rows(table: str, n: int, rng: random.Random) -> list[Any]:
    cls = F.TABLES[table][0]
    out = []
    for _ in range(n):
        values: list[Any] = []
        for f, kind in zip(dataclasses.fields(cls), F.KINDS[table], strict=True):
            if "None" in str(f.type) and rng.random() < 0.3:
                values.append(None)
            elif kind == "int":
                values.append(rng.getrandbits(rng.choice((8, 64, 128))))
            elif kind == "time":
                values.append(1_700_000_000 + rng.randrange(10_000_000))
            elif kind == "bytes":
                values.append(rng.randbytes(20))
            elif kind == "bool":
                values.append(rng.random() < 0.5)
            else:
                values.append(f"question {rng.randrange(10**6)}")
        out.append(cls(*values))
    return out


def timed(fn: Callable[[Any], Any], items: Sequence[Any], rounds: int = 3) -> tuple[float, list[Any]]:
    """Best of `rounds`: microseconds per item, and the results of the last round."""
    best = float("inf")
    out: list[Any] = []
    for _ in range(rounds):
        started = time.perf_counter()
        out = [fn(x) for x in items]
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e6, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="items per case")
    args = parser.parse_args()
    rng = random.Random(16)
    print(f"python -m bench.codegen --n {args.n}")
    print("| case | generated µs/item | plain µs/item | plain/generated |")
    print("|---|---|---|---|")

    def report(case: str, gen: tuple[float, list[Any]], plain: tuple[float, list[Any]]) -> None:
        if gen[1] != plain[1]:
            raise SystemExit(f"{case}: plain and generated results differ")
        print(f"| {case} | {gen[0]:.2f} | {plain[0]:.2f} | {plain[0] / gen[0]:.2f}x |", flush=True)

    for (contract, name), cls in TYPED.items():
        if cls is MarketCreated or name not in ("Trade", "SharesTraded", "DividendsClaimed"):
            continue
        abi = next(e for e in load_abi(contract) if e["type"] == "event" and e["name"] == name)
        logs = raw_logs(abi, args.n, rng)
        gen, plain = generated_body(cls, abi), _body(cls, abi)
        report(f"rawlogs reader, {name}", timed(lambda a, f=gen: f(*a), logs), timed(lambda a, f=plain: f(*a), logs))
    for table in R.DERIVED:
        items = fold_rows(table, args.n // 2, rng)
        gl, pl = generated_line_writer(table), R.LINES[table]
        report(
            f"COPY line, {table}",
            timed(lambda r, f=gl: f("8453", r), items),
            timed(lambda r, f=pl: f("8453", r), items),
        )
        gw, pw = generated_record_writer(table), R.WRITERS[table]
        report(f"record, {table}", timed(lambda r, f=gw: f(8453, r), items), timed(lambda r, f=pw: f(8453, r), items))
        ints = set(R.INT_IDX[table])
        records = [
            ["(0,1)", *(None if v is None else str(v) if i in ints else v for i, v in enumerate(pw(8453, r)[1:]))]
            for r in items
        ]
        gr, pr = generated_record_reader(table, 1), R._record_reader(table, 1)
        report(f"row from record, {table}", timed(gr, records), timed(pr, records))


if __name__ == "__main__":
    main()
