"""Runs every SQL query of the Market and Ingestion runs dashboards against a PostgreSQL
store with psql: variable queries first (their first value, or all values for an "All"
variable, feeds the later queries), then every panel target and annotation, with Grafana's
macros expanded over the time range given. Each must run without error and return rows.

usage: check_sql.py DATABASE_URL FROM_RFC3339 TO_RFC3339"""

import subprocess
import sys
from datetime import datetime

import dashboards as dl

CHECKED = ["market.json", "ingestion-runs.json"]

# Tables the running pipeline does not write yet: their queries must run without error,
# and an empty result is reported loudly instead of failing. Remove a table from here as
# soon as `pricestream run` produces its rows.
# tables no part of the project writes yet (their queries only warn on zero rows)
NOT_YET_PRODUCED: dict = {}


def psql(url, sql):
    r = subprocess.run(
        ["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-F", "\t", "-c", sql],
        capture_output=True, text=True, timeout=60,
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return [line for line in r.stdout.split("\n") if line != ""]


def builtins(t_from, t_to):
    f = datetime.fromisoformat(t_from.replace("Z", "+00:00"))
    t = datetime.fromisoformat(t_to.replace("Z", "+00:00"))
    f_ns, t_ns = int(f.timestamp()) * 10**9, int(t.timestamp()) * 10**9
    fq, tq = f"'{f.isoformat()}'", f"'{t.isoformat()}'"
    return {
        "__interval": "1m",
        "__interval_ms": "60000",
        "__macros__": {
            "__timeFilter": lambda c: f"{c} BETWEEN {fq} AND {tq}",
            "__timeFrom": lambda _c: fq,
            "__timeTo": lambda _c: tq,
            "__unixEpochNanoFilter": lambda c: f"{c} >= {f_ns} AND {c} <= {t_ns}",
            "__unixEpochNanoFrom": lambda _c: str(f_ns),
            "__unixEpochNanoTo": lambda _c: str(t_ns),
            "__unixEpochFilter": lambda c: f"{c} >= {f_ns // 10**9} AND {c} <= {t_ns // 10**9}",
        },
    }


def main():
    url, t_from, t_to = sys.argv[1:4]
    b = builtins(t_from, t_to)
    failures, ok, warned = [], 0, []
    for name in CHECKED:
        dash = dl.load(name)
        values, multi = {}, set()
        for var in dl.variables(dash):
            if var.get("type") == "datasource":
                continue
            where = f"{name}: variable {var.get('name')}"
            if var.get("type") != "query" or dl.ds_uid(var) != dl.PG_VAR:
                failures.append(f"{where}: not a PostgreSQL query variable")
                continue
            sql = dl.substitute(dl.variable_query(var), values, b, quote_sql=True, multi=multi)
            try:
                rows = psql(url, sql)
            except Exception as e:
                failures.append(f"{where}: {e}\n      {sql}")
                continue
            if not rows:
                failures.append(f"{where}: no values\n      {sql}")
                continue
            # a value column is __value when present, else the first column
            first = [r.split("\t")[-1] if "__value" in sql else r.split("\t")[0] for r in rows]
            values[var["name"]] = first if var.get("includeAll") else first[:1]
            if var.get("includeAll") or var.get("multi"):
                multi.add(var["name"])
            ok += 1
        for where, uid, target in dl.queries(dash):
            where = f"{name}: {where}"
            if uid != dl.PG_VAR:
                failures.append(f"{where}: does not use the ${{postgres}} datasource variable")
                continue
            try:
                sql = dl.substitute(target["rawSql"], values, b, quote_sql=True, multi=multi)
            except KeyError as e:
                failures.append(f"{where}: {e}")
                continue
            try:
                n = int(psql(url, f"SELECT count(*) FROM (\n{sql}\n) AS q")[0])
            except Exception as e:
                failures.append(f"{where}: {e}\n      {sql}")
                continue
            if n == 0:
                pending = [t for t in NOT_YET_PRODUCED if f"FROM {t}" in sql]
                if pending:
                    warned.append(f"{where}: no rows ({NOT_YET_PRODUCED[pending[0]]})")
                    continue
                failures.append(f"{where}: returned no rows\n      {sql}")
                continue
            ok += 1
    for w in warned:
        print(f"  WARNING {w}", file=sys.stderr)
    for f in failures:
        print(f"  FAIL {f}", file=sys.stderr)
    print(f"    {ok} dashboard SQL queries returned rows, {len(warned)} ran but had no rows yet, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
