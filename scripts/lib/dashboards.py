"""Reads the queries out of the Grafana dashboards and substitutes their variables the way
Grafana does, for the checks that run them against real servers
(scripts/checks/prometheus.sh, scripts/checks/grafana-sql.sh)."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"

PROM_VAR = "${prometheus}"
PG_VAR = "${postgres}"


def load(name):
    return json.loads((DASHBOARDS / name).read_text())


def all_dashboards():
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dash):
    for p in dash.get("panels", []):
        yield p
        for inner in p.get("panels", []) or []:
            yield inner


def ds_uid(obj):
    ds = obj.get("datasource") or {}
    return ds.get("uid") if isinstance(ds, dict) else ds


def queries(dash):
    """(where, datasource uid, target) for every panel target and annotation."""
    for p in panels(dash):
        for t in p.get("targets", []) or []:
            yield (f"panel {p.get('title')!r} target {t.get('refId')}", ds_uid(t) or ds_uid(p), t)
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("builtIn"):
            continue
        t = a.get("target") or {}
        yield (f"annotation {a.get('name')!r}", ds_uid(t) or ds_uid(a), t)


def variables(dash):
    return dash.get("templating", {}).get("list", [])


def variable_query(var):
    q = var.get("query")
    if isinstance(q, dict):
        return q.get("query") or q.get("rawSql") or ""
    return q or ""


_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def substitute(text, values, builtins, quote_sql=False, multi=()):
    """Replaces $name, ${name} and ${name:format}. `values` maps a variable to a list of
    values; variables named in `multi` (multi-value or "All") render as Grafana renders
    them: a regex alternation for PromQL, a comma list of quoted strings for SQL.
    `builtins` maps $__names to their text. Unknown variables are an error."""

    def repl(m):
        name = m.group(1) or m.group(3)
        fmt = m.group(2)
        if name.startswith("__"):
            if name in builtins and isinstance(builtins[name], str):
                return builtins[name]
            raise KeyError(f"unknown builtin ${name}")
        if name not in values:
            raise KeyError(f"unknown variable ${name}")
        vals = values[name]
        if fmt == "csv":
            return ",".join(vals)
        if quote_sql and (name in multi or fmt == "sqlstring"):
            return ",".join("'" + v.replace("'", "''") + "'" for v in vals)
        if len(vals) == 1:
            return vals[0]
        return "(" + "|".join(re.escape(v) for v in vals) + ")"

    # Grafana's SQL macros ($__timeFilter(col), ...) take arguments: expand them first
    for macro, fn in builtins.get("__macros__", {}).items():
        text = re.sub(r"\$" + macro + r"\(([^()]*)\)", lambda m, fn=fn: fn(m.group(1).strip()), text)
    return _VAR.sub(repl, text)
