//! End to end: the real binary on the embedded default with a sped-up synthetic market.
//! Waits for closed 1m bars over HTTP, stops with SIGTERM, and checks that the API and the
//! Parquet lake hold the same bars.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pricestream");
const SYMBOLS: [&str; 3] = ["BTC-USDT", "ETH-USDT", "SOL-USDT"];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 GET (the tests need no HTTP client library).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

/// GET with an Accept header; returns the raw body bytes (de-chunked).
fn get_bytes(port: u16, path: &str, accept: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/vnd.apache.arrow.stream"),
        "{head}"
    );
    let mut body = &raw[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return body.to_vec();
    }
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let n =
            usize::from_str_radix(std::str::from_utf8(&body[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + n]);
        body = &body[eol + 4 + n..];
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("pricestream.toml");
    let text = format!(
        r#"
data_dir = "{data}"
[api]
listen = "127.0.0.1:{port}"
[api.auth.tiers.anonymous]
requests_per_sec = 1000.0
burst = 1000
[api.auth.tiers.basic]
requests_per_sec = 50.0
burst = 100
[bus]
partitions = 4
[pipeline]
workers = 2
idle_timeout_ms = 500
max_out_of_orderness_ms = 2000
[connectors.synthetic]
seed = 99
symbols = {symbols:?}
trades_per_sec = 10.0
speed = 60.0
start_ms = 1763683200000
"#,
        data = dir.join("data").display(),
        symbols = SYMBOLS,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A child process that is killed if the test fails before stopping it.
struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(cmd: &str, config: &Path) -> Proc {
    Proc(Some(
        Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), cmd])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(mut proc: Proc) -> String {
    let mut child = proc.0.take().unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "exit status {status}; log:\n{err}");
    err
}

type Key = (String, i64);

fn api_bars(port: u16, symbol: &str) -> BTreeMap<Key, Value> {
    let (status, body) = get(
        port,
        &format!("/v1/ohlcv?symbol={symbol}&interval=1m&from=0&limit=10000"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                (
                    b["symbol"].as_str().unwrap().to_string(),
                    b["bucket_start"].as_i64().unwrap(),
                ),
                b.clone(),
            )
        })
        .collect()
}

fn lake_bars(root: &Path) -> BTreeMap<Key, Value> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, TimestampNanosecondType, UInt32Type, UInt64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut files = Vec::new();
    let mut stack = vec![root.join("bars/interval=1m")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert!(
                    p.file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .starts_with("date="),
                    "{p:?}"
                );
                stack.push(p);
            } else {
                assert_eq!(p.extension().unwrap(), "parquet", "stray file {p:?}");
                files.push(p);
            }
        }
    }
    assert!(!files.is_empty(), "no parquet files");
    let mut out = BTreeMap::new();
    for f in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
            let f64s = |n: &str| {
                b.column_by_name(n)
                    .unwrap()
                    .as_primitive::<Float64Type>()
                    .clone()
            };
            let ts = |n: &str| {
                b.column_by_name(n)
                    .unwrap()
                    .as_primitive::<TimestampNanosecondType>()
                    .clone()
            };
            let (sym, start) = (s("symbol"), ts("bucket_start"));
            let (open, high, low, close, volume, vwap) = (
                f64s("open"),
                f64s("high"),
                f64s("low"),
                f64s("close"),
                f64s("volume"),
                f64s("vwap"),
            );
            let count = b
                .column_by_name("trade_count")
                .unwrap()
                .as_primitive::<UInt64Type>()
                .clone();
            let rev = b
                .column_by_name("revision")
                .unwrap()
                .as_primitive::<UInt32Type>()
                .clone();
            for i in 0..b.num_rows() {
                out.insert(
                    (sym.value(i).to_string(), start.value(i)),
                    serde_json::json!({
                        "open": open.value(i), "high": high.value(i), "low": low.value(i),
                        "close": close.value(i), "volume": volume.value(i), "vwap": vwap.value(i),
                        "trade_count": count.value(i), "revision": rev.value(i),
                    }),
                );
            }
        }
    }
    out
}

fn same_bar(api: &Value, lake: &Value) -> bool {
    [
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "trade_count",
        "revision",
    ]
    .iter()
    .all(|k| api[k] == lake[k])
}

#[test]
fn embedded_run_serves_and_lands_the_same_bars() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let child = spawn("run", &config);

    // health first, then closed bars for every symbol (60x speed: a minute a second)
    wait_for("health", Duration::from_secs(60), || {
        get(port, "/health/live").filter(|r| r.0 == 200)
    });
    let (status, body) = get(port, "/health/ready").unwrap();
    assert_eq!(status, 200, "{body}");
    let during: BTreeMap<Key, Value> =
        wait_for("3 closed bars per symbol", Duration::from_secs(60), || {
            let all: BTreeMap<Key, Value> =
                SYMBOLS.iter().flat_map(|s| api_bars(port, s)).collect();
            SYMBOLS
                .iter()
                .all(|s| all.keys().filter(|k| k.0 == *s).count() >= 3)
                .then_some(all)
        });
    for bar in during.values() {
        let (o, h, l, c) = (
            bar["open"].as_f64().unwrap(),
            bar["high"].as_f64().unwrap(),
            bar["low"].as_f64().unwrap(),
            bar["close"].as_f64().unwrap(),
        );
        assert!(l <= o.min(c) && o.max(c) <= h, "{bar}");
        assert!(bar["trade_count"].as_u64().unwrap() > 0);
        assert_eq!(bar["interval"], "1m");
        assert!(bar["time"].as_str().unwrap().starts_with("2025-11-21T"));
    }

    // errors have one shape
    let (status, body) = get(port, "/v1/ohlcv?symbol=BTC-USDT&interval=7m").unwrap();
    assert_eq!(status, 400);
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], "bad_request");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("interval"));
    let (status, _) = get(
        port,
        "/v1/ohlcv?symbol=BTC-USDT&from=2025-11-22T00:00:00Z&to=2025-11-21T00:00:00Z",
    )
    .unwrap();
    assert_eq!(status, 400);
    let (status, _) = get(port, "/v1/ohlcv?symbol=BTC-USDT&limit=0").unwrap();
    assert_eq!(status, 400);
    let (status, _) = get(port, "/v1/nope").unwrap();
    assert_eq!(status, 404);

    // CSV and Arrow IPC carry the same bars; pages follow each other without overlap
    let (status, csv) = get(port, "/v1/ohlcv?symbol=BTC-USDT&from=0&limit=3&format=csv").unwrap();
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("time,venue,symbol,interval,bucket_start,open"),
        "{csv}"
    );
    assert_eq!(lines.len(), 4);
    let (_, page1) = get(port, "/v1/ohlcv?symbol=BTC-USDT&from=0&limit=2").unwrap();
    let page1: Value = serde_json::from_str(&page1).unwrap();
    let next = page1["next_from"].as_str().unwrap();
    let (_, page2) = get(
        port,
        &format!("/v1/ohlcv?symbol=BTC-USDT&from={next}&limit=2"),
    )
    .unwrap();
    let page2: Value = serde_json::from_str(&page2).unwrap();
    let t = |p: &Value, i: usize| p["bars"][i]["bucket_start"].as_i64().unwrap();
    assert!(t(&page1, 1) < t(&page2, 0), "pages overlap");
    assert_eq!(
        t(&page2, 0) - t(&page1, 1),
        60_000_000_000,
        "a bar was skipped between pages"
    );
    assert_eq!(
        lines[3].split(',').nth(4).unwrap().parse::<i64>().unwrap(),
        t(&page2, 0)
    );
    let arrow = get_bytes(
        port,
        "/v1/ohlcv?symbol=BTC-USDT&from=0&limit=3",
        "application/vnd.apache.arrow.stream",
    );
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);
    let (status, _) = get(port, "/v1/ohlcv?symbol=BTC-USDT&format=xml").unwrap();
    assert_eq!(status, 400);

    // latest quotes, signals and runs
    let (status, latest) = get(port, "/v1/quotes/latest").unwrap();
    assert_eq!(status, 200, "{latest}");
    let latest: Value = serde_json::from_str(&latest).unwrap();
    assert_eq!(latest["count"], SYMBOLS.len());
    assert!(latest["quotes"][0]["quote"]["price"].as_f64().unwrap() > 0.0);
    let (status, sigs) = get(port, "/v1/signals?symbol=BTC-USDT&interval=1m").unwrap();
    assert_eq!(status, 200, "{sigs}");
    assert!(serde_json::from_str::<Value>(&sigs).unwrap()["signals"].is_array());
    assert_eq!(get(port, "/v1/signals?kind=moon").unwrap().0, 400);
    let (status, runs) = get(port, "/v1/runs?connector=synthetic").unwrap();
    assert_eq!(status, 200, "{runs}");
    let runs: Value = serde_json::from_str(&runs).unwrap();
    assert_eq!(runs["runs"][0]["status"], "running");
    let run_id = runs["runs"][0]["id"].as_str().unwrap();
    let (status, one) = get(port, &format!("/v1/runs/{run_id}")).unwrap();
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        serde_json::from_str::<Value>(&one).unwrap()["run"]["connector"],
        "synthetic"
    );
    assert_eq!(get(port, "/v1/runs/no-such-run").unwrap().0, 404);
    assert_eq!(get(port, "/v1/runs?status=sleeping").unwrap().0, 400);

    // metrics carry the pipeline's counters
    let (status, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    for name in [
        "pricestream_pipeline_quotes_ingested_total",
        "pricestream_pipeline_bars_emitted_total",
        "pricestream_pipeline_watermark_lag_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    let log = terminate(child);
    assert!(log.contains("stopped cleanly"), "{log}");

    // the lake holds every bar the API showed during the run, with the same values
    let lake = lake_bars(&dir.path().join("data/lake"));
    for (key, bar) in &during {
        let in_lake = lake
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} missing from the lake"));
        assert!(same_bar(bar, in_lake), "{key:?}: api {bar} lake {in_lake}");
    }

    // after shutdown (open windows flushed), the store and the lake agree exactly
    let port2 = free_port();
    let config2 = write_config(dir.path(), port2);
    let server = spawn("serve", &config2);
    wait_for("serve", Duration::from_secs(60), || {
        get(port2, "/health/ready").filter(|r| r.0 == 200)
    });
    let stored: BTreeMap<Key, Value> = SYMBOLS.iter().flat_map(|s| api_bars(port2, s)).collect();
    assert_eq!(
        stored.len(),
        lake.len(),
        "store and lake hold different bar counts"
    );
    for (key, bar) in &stored {
        assert!(
            same_bar(bar, &lake[key]),
            "{key:?}: store {bar} lake {}",
            lake[key]
        );
    }
    let (_, symbols) = get(port2, "/v1/symbols").unwrap();
    let symbols: Value = serde_json::from_str(&symbols).unwrap();
    assert_eq!(symbols["symbols"].as_array().unwrap().len(), SYMBOLS.len());
    terminate(server);
}

#[test]
fn config_check_and_migrate_work_and_bad_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port());
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("data/pricestream.db").exists());

    // API keys: created once, listed without secrets, revoked
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(["--config", config.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&[
        "keys", "create", "--name", "notebook", "--scopes", "read", "--tier", "basic",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(key.starts_with("ps_"), "{key}");
    let id = key.split('_').nth(1).unwrap().to_string();
    let listed = String::from_utf8_lossy(&cli(&["keys", "list"]).stdout).into_owned();
    assert!(
        listed.contains(&id) && listed.contains("notebook") && listed.contains("active"),
        "{listed}"
    );
    assert!(!listed.contains(&key), "the secret was listed");
    assert!(cli(&["keys", "revoke", &id]).status.success());
    assert!(String::from_utf8_lossy(&cli(&["keys", "list"]).stdout).contains("revoked"));
    assert!(
        !cli(&["keys", "revoke", &id]).status.success(),
        "revoked twice"
    );
    assert!(!cli(&["keys", "create", "--name", "x", "--scopes", "root"])
        .status
        .success());
    assert!(
        !cli(&["keys", "create", "--name", "x", "--tier", "platinum"])
            .status
            .success()
    );

    // connector settings are checked as `run` would build them: a rate limit no request
    // fits into, and a replay input that does not exist
    for (enable, key, value, says) in [
        (
            "PRICESTREAM_CONNECTORS__BINANCE__ENABLED",
            "PRICESTREAM_CONNECTORS__BINANCE__HTTP__WEIGHT_PER_WINDOW",
            "1",
            "weight_per_window",
        ),
        (
            "PRICESTREAM_CONNECTORS__REPLAY__ENABLED",
            "PRICESTREAM_CONNECTORS__REPLAY__PATHS",
            "[\"/nonexistent/trades.csv\"]",
            "/nonexistent/trades.csv",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "config", "check"])
            .env(enable, "true")
            .env(key, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}={value} passed the check");
        assert!(err.contains(says), "{key}={value}: {err}");
    }

    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "config", "check"])
        .env("PRICESTREAM_PIPELINE__WINDOWS", "3")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("windows"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn replay_turns_a_trade_dump_into_bars_and_exits_when_done() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port());
    // a data.binance.vision trade dump (spot layout, no header): 3 hours of ETHUSDT trades,
    // several per second, prices in cents as the dumps print them
    let start_ms: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000;
    let mut csv = String::new();
    let mut expected: BTreeMap<i64, (f64, f64, f64, f64, f64, u64)> = BTreeMap::new();
    let mut t = start_ms;
    let mut price_cents: i64 = 200_000;
    for id in 0..40_000u64 {
        t += 37 + (id as i64 * 7919) % 450;
        price_cents += (id as i64 * 104_729 % 7) - 3;
        let qty_milli = 1 + (id * 31) % 2_000;
        let (price, qty) = (price_cents as f64 / 100.0, qty_milli as f64 / 1_000.0);
        csv.push_str(&format!(
            "{},{}.{:02},{}.{:03},{:.5},{},{},True\n",
            9_000_000 + id,
            price_cents / 100,
            price_cents % 100,
            qty_milli / 1_000,
            qty_milli % 1_000,
            price * qty,
            t,
            if id % 3 == 0 { "True" } else { "False" },
        ));
        let minute = (t - t % 60_000) * 1_000_000;
        let e = expected
            .entry(minute)
            .or_insert((price, price, price, price, 0.0, 0));
        e.1 = e.1.max(price);
        e.2 = e.2.min(price);
        e.3 = price;
        e.4 += qty;
        e.5 += 1;
    }
    let dump = dir.path().join("ETHUSDT-trades-2023-11-14.csv");
    std::fs::write(&dump, csv).unwrap();

    let mut child = Proc(Some(
        Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "replay"])
            .args(["--format", "binance-trades-csv", "--symbol", "ETH-USDT"])
            .arg(&dump)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let c = child.0.as_mut().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "replay did not exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    c.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(
        !log.contains("API listening"),
        "replay serves no API:\n{log}"
    );

    // every minute of the dump is a bar, with the dump's own numbers; nothing else (the
    // configuration's synthetic market stayed off)
    let bars = lake_bars(&dir.path().join("data/lake"));
    let got: BTreeMap<i64, (f64, f64, f64, f64, f64, u64)> = bars
        .iter()
        .map(|((sym, start), b)| {
            assert_eq!(sym, "ETH-USDT");
            let f = |k: &str| b[k].as_f64().unwrap();
            (
                *start,
                (
                    f("open"),
                    f("high"),
                    f("low"),
                    f("close"),
                    f("volume"),
                    b["trade_count"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    for ((m, g), (em, e)) in got.iter().zip(&expected) {
        assert_eq!(m, em);
        assert_eq!(
            (g.0, g.1, g.2, g.3, g.5),
            (e.0, e.1, e.2, e.3, e.5),
            "bar {m}"
        );
        assert!(
            (g.4 - e.4).abs() <= 1e-9 * e.4,
            "volume of bar {m}: {} vs {}",
            g.4,
            e.4
        );
    }
    assert_eq!(got.values().map(|b| b.5).sum::<u64>(), 40_000);

    // a bad format name is refused before anything runs
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "replay"])
        .args(["--format", "trades", "x.csv"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("binance-trades-csv"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
