"""Checks docker-compose.yml (as resolved by `docker-compose config` with .env.example)
against the real project:
- every service built from this repository runs a command the real CLI accepts
  (`pricestream <command> --help`), and its environment passes `pricestream config check`
  (unknown PRICESTREAM_* keys and bad values are refused there);
- its health check asks the API's /health/ready on the port it listens on, and the
  Dockerfile runs the binary as a non-root user;
- Prometheus scrapes that service on that port;
- Grafana mounts the provisioning and dashboards where the provisioning says, and has
  every variable the datasource provisioning interpolates.

usage: check_compose.py RESOLVED_COMPOSE_YAML PRICESTREAM_BIN"""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
failures = []


def fail(msg):
    failures.append(msg)


def env_dict(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command_list(svc):
    c = svc.get("command")
    if c is None:
        return ["run"]  # the Dockerfile's CMD
    return c if isinstance(c, list) else c.split()


def main():
    compose = yaml.safe_load(Path(sys.argv[1]).read_text())
    binary = sys.argv[2]
    services = compose.get("services", {})

    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        fail("Dockerfile: the runtime stage must end with a non-root USER")
    if not re.search(r'^ENTRYPOINT\s+\["pricestream"\]', dockerfile, re.M):
        fail('Dockerfile: ENTRYPOINT must be ["pricestream"]')
    if len(re.findall(r"^FROM\s", dockerfile, re.M)) < 2:
        fail("Dockerfile: expected a multi-stage build")
    image_env = {}
    for m in re.finditer(r"^ENV\s+((?:.*\\\n)*.*)", dockerfile, re.M):
        for k, v in re.findall(r"(\w+)=(\S+)", m.group(1)):
            image_env[k] = v

    ours = {n: s for n, s in services.items() if s.get("build") is not None}
    if not ours:
        fail("no service is built from this repository")
    listen_ports = {}
    for name, svc in ours.items():
        cmd = command_list(svc)
        r = subprocess.run([binary, *cmd, "--help"], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"service {name}: command {cmd} is not accepted by the CLI: {r.stderr.strip()}")
        env = {**image_env, **env_dict(svc)}
        bad = [k for k in env if k.startswith("PRICESTREAM") and not k.startswith("PRICESTREAM_")]
        if bad:
            fail(f"service {name}: malformed variables {bad}")
        # only the service's own variables, as the container would see them
        clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
        r = subprocess.run([binary, "config", "check"], capture_output=True, text=True, env=clean)
        if r.returncode != 0:
            fail(f"service {name}: `pricestream config check` refuses its environment: "
                 f"{(r.stderr or r.stdout).strip()}")
            continue
        cfg = tomllib.loads(r.stdout)  # the effective configuration, as TOML
        listen = cfg.get("api", {}).get("listen", "")
        port = listen.rsplit(":", 1)[-1]
        if cmd[0] in ("run", "serve"):
            listen_ports[name] = port
            test = " ".join(svc.get("healthcheck", {}).get("test", []))
            if f":{port}/health/ready" not in test:
                fail(f"service {name}: health check {test!r} does not ask /health/ready on port {port}")
            if not listen.startswith("0.0.0.0:"):
                fail(f"service {name}: api.listen {listen} is not reachable from other containers")

    prom = services.get("prometheus")
    if not prom:
        fail("no prometheus service")
    else:
        mounts = [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}" for v in prom.get("volumes", [])]
        cfg_mount = [m for m in mounts if m.split(":")[1:2] == ["/etc/prometheus/prometheus.yml"]]
        if not cfg_mount:
            fail("prometheus: its configuration is not mounted")
        else:
            pcfg = yaml.safe_load(Path(cfg_mount[0].split(":")[0]).read_text())
            targets = [t for sc in pcfg.get("scrape_configs", []) for st in sc.get("static_configs", [])
                       for t in st.get("targets", [])]
            for name, port in listen_ports.items():
                if f"{name}:{port}" not in targets:
                    fail(f"prometheus: does not scrape {name}:{port} (targets {targets})")

    graf = services.get("grafana")
    if not graf:
        fail("no grafana service")
    else:
        mounts = {}
        for v in graf.get("volumes", []):
            src, dst = (v.split(":")[:2] if isinstance(v, str) else (v.get("source"), v.get("target")))
            mounts[dst] = src
        prov = mounts.get("/etc/grafana/provisioning")
        if not prov or Path(prov).resolve() != (ROOT / "grafana/provisioning").resolve():
            fail("grafana: grafana/provisioning is not mounted at /etc/grafana/provisioning")
        for f in (ROOT / "grafana/provisioning/dashboards").glob("*.yml"):
            for p in yaml.safe_load(f.read_text()).get("providers", []):
                path = p.get("options", {}).get("path")
                if path not in mounts or Path(mounts[path]).resolve() != (ROOT / "grafana/dashboards").resolve():
                    fail(f"grafana: dashboards provider path {path} is not grafana/dashboards")
        genv = env_dict(graf)
        for f in (ROOT / "grafana/provisioning/datasources").glob("*.yml"):
            for var in re.findall(r"\$\{(\w+)\}", f.read_text()):
                if not genv.get(var):
                    fail(f"grafana: {f.name} uses ${{{var}}} but the service does not set it")

    for f in failures:
        print(f"  FAIL {f}", file=sys.stderr)
    print(f"    {len(ours)} PriceStream services and the Prometheus/Grafana wiring checked, {len(failures)} problems")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
