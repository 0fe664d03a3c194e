"""Runs every PromQL expression of the dashboards against a Prometheus that scrapes a
running PriceStream: each must evaluate without error and return data.

usage: check_promql.py PROMETHEUS_URL [--timeout SECONDS]
Variables: datasource variables are dropped; query variables (label_values(...)) are
evaluated and the check runs once with "All" (the variable's allValue) and once with single
values (data from one of them suffices: not every instance feeds every panel)."""

import itertools
import json
import sys
import time
import urllib.parse
import urllib.request

import dashboards as dl

BUILTINS = {"__rate_interval": "20s", "__interval": "5s", "__range": "2m", "__interval_ms": "5000"}


def api(base, path, params):
    url = f"{base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]


def label_values(base, q):
    # label_values(metric, label) or label_values(label)
    inner = q.strip()[len("label_values("):-1]
    parts = [p.strip() for p in inner.split(",")]
    label = parts[-1]
    params = {"match[]": parts[0]} if len(parts) == 2 else {}
    return api(base, f"/api/v1/label/{label}/values", params)


def cases(base):
    """(dashboard, where, [expr, ...], error) for every expression: once with every "All"
    variable at its allValue, and once with single values. The single-value case lists the
    expression for every combination of values: a panel that only some instances feed
    (Kafka, a venue's breaker) passes when one of them has data, as a user picking that
    instance sees it."""
    out = []
    for name, dash in dl.all_dashboards().items():
        prom_targets = [(w, t) for w, uid, t in dl.queries(dash) if uid == dl.PROM_VAR]
        if not prom_targets:
            continue
        all_values, first, choices = {}, {}, []
        for var in dl.variables(dash):
            if var.get("type") == "datasource":
                continue
            if var.get("type") != "query" or dl.ds_uid(var) != dl.PROM_VAR:
                raise SystemExit(f"{name}: variable {var.get('name')} is not a Prometheus query variable")
            q = dl.substitute(dl.variable_query(var), first, BUILTINS)
            if not q.startswith("label_values("):
                raise SystemExit(f"{name}: variable {var['name']}: only label_values() is supported, got {q}")
            vals = label_values(base, q)
            if not vals:
                out.append((name, f"variable {var['name']}", [q], "returned no values"))
                vals = ["<none>"]
            all_values[var["name"]] = [var.get("allValue") or ".*"] if var.get("includeAll") else vals[:1]
            first[var["name"]] = vals[:1]
            choices.append([(var["name"], [v]) for v in vals])
        singles = [dict(c) for c in itertools.product(*choices)]
        for where, t in prom_targets:
            out.append((name, where, [dl.substitute(t["expr"], all_values, BUILTINS)], None))
            out.append((name, where, [dl.substitute(t["expr"], v, BUILTINS) for v in singles], None))
    return out


def run(base):
    failures, ok = [], 0
    for dash, where, exprs, err in cases(base):
        if err:
            failures.append(f"{dash}: {where}: {exprs[0]}: {err}")
            continue
        found, problem = False, None
        for expr in exprs:
            try:
                data = api(base, "/api/v1/query", {"query": expr})
            except Exception as e:  # an HTTP 400 carries Prometheus' parse error
                detail = getattr(e, "read", lambda: b"")().decode(errors="replace")
                problem = f"{expr}: {e} {detail}"
                break
            if data.get("result"):
                found = True
                break
        if problem:
            failures.append(f"{dash}: {where}: {problem}")
        elif not found:
            failures.append(f"{dash}: {where}: {exprs[0]}: no data (for any of {len(exprs)} variable values)")
        else:
            ok += 1
    return ok, failures


def main():
    base = sys.argv[1].rstrip("/")
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--timeout" else 60.0
    deadline = time.monotonic() + timeout
    while True:
        ok, failures = run(base)
        if not failures or time.monotonic() > deadline:
            break
        time.sleep(2)
    for f in failures:
        print(f"  FAIL {f}", file=sys.stderr)
    print(f"    {ok} PromQL evaluations returned data, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
