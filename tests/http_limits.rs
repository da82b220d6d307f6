//! The HTTP front doors and the metrics endpoint under attack, over loopback, against the real daemon: each test
//! first mounts the attack of issue 15 (slow headers and bodies, idle connections taking every file handle,
//! tokenless 2 MiB bodies, a proxy's address locked out, a hot accept loop), then checks that while it runs an
//! honest client still gets its job done (and an OpenSSH client still logs in, where file handles are at stake).
//! The attacks are small and bounded: a few seconds each.

use crate::harness::{wait_until, Daemon, Demo};
use crate::http::{demo, http_settings, Api, OTHER_TOKEN, TOKEN};
use reqwest::StatusCode;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// The address an honest client connects from: not the attacker's 127.0.0.1.
fn honest() -> Option<IpAddr> {
    Some("127.0.0.2".parse().expect("loopback address"))
}

fn address(api: &Api) -> SocketAddr {
    api.base
        .trim_start_matches("http://")
        .parse()
        .expect("the listener's address")
}

/// Connects from `local` (a loopback address) to `to`.
fn connect_from(local: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: SocketAddr = format!("{local}:0").parse().expect("address");
    socket.bind(&local.into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// What the server sends on `stream` until it closes it, or `None` when it keeps it open past `limit`.
fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned())
            }
            Err(_) => return None,
        }
    }
}

/// An honest job, submitted and finished while an attack runs.
fn honest_job(api: &Api) {
    let id = api.job("gdpr_erasure", "EMAIL,test@test.com");
    let response = api.finished(id);
    assert_eq!(response["contacts"][0]["response"], "SUCCESS");
}

/// Fields 14 and 15 of `/proc/PID/stat`: the process's CPU time so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after = stat.rsplit_once(')').expect("comm").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn open_handles(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a memory figure")
}

/// Gives the running daemon the file-handle limit a systemd service gets by default.
fn limit_handles(daemon: &Daemon, n: u32) {
    let out = Command::new("prlimit")
        .args([
            "--pid",
            &daemon.child.id().to_string(),
            &format!("--nofile={n}:{n}"),
        ])
        .output()
        .expect("prlimit runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OpenSSH client logs in to the embedded SFTP server and lists GDPR_Result.
fn sftp_login_works(demo: &Demo, daemon: &Daemon) {
    let port = crate::sftp::sftp_port(&daemon.log_text());
    let batch = demo.dir.path().join("batch");
    std::fs::write(&batch, "ls GDPR_Result\n").expect("batch");
    let out = Command::new("sftp")
        .args([
            "-b",
            batch.to_str().expect("utf-8"),
            "-P",
            &port.to_string(),
            "-i",
            demo.dir
                .path()
                .join("demo_ed25519")
                .to_str()
                .expect("utf-8"),
        ])
        .args(crate::sftp::ssh_options())
        .arg("demo@127.0.0.1")
        .output()
        .expect("sftp runs");
    assert!(
        out.status.success(),
        "an SFTP login fails during the attack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn slow_headers_idle_connections_and_trickled_bodies_are_dropped() {
    let demo = demo(
        100,
        http_settings("header_timeout_seconds = 2\nbody_timeout_seconds = 3\n"),
    );
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let to = address(&api);
    let started = Instant::now();
    // Headers that never end, a connection that never speaks, a body that trickles in (with a right token:
    // the body deadline holds for customers too).
    let mut partial = TcpStream::connect(to).expect("connect");
    partial
        .write_all(b"POST /lcm HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        .expect("write");
    let mut idle = TcpStream::connect(to).expect("connect");
    let mut trickle = TcpStream::connect(to).expect("connect");
    trickle
        .write_all(
            format!("POST /accounts/demo/gdpr_erasure HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\nEMAIL,")
                .as_bytes(),
        )
        .expect("write");
    let dripping = {
        let mut trickle = trickle.try_clone().expect("clone");
        std::thread::spawn(move || {
            for _ in 0..40 {
                if trickle.write_all(b"a").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    honest_job(&api);
    let limit = Duration::from_secs(15);
    until_closed(&mut partial, limit).expect("partial headers are dropped");
    until_closed(&mut idle, limit).expect("an idle connection is dropped");
    let answer = until_closed(&mut trickle, limit).expect("a trickled body is cut off");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("did not arrive within 3 seconds"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    dripping.join().expect("the dripping thread");
}

#[test]
fn eleven_hundred_idle_connections_leave_file_handles_for_others() {
    let demo = demo(100, |_| {});
    let daemon = demo.start();
    limit_handles(&daemon, 1024);
    let api = Api::from_address(&daemon, honest());
    let to = address(&api);
    let pid = daemon.child.id();
    let before = open_handles(pid);
    let mut held = Vec::new();
    for _ in 0..1_100 {
        // The kernel completes the handshake whether or not gdprd accepts; what matters is what gdprd keeps.
        if let Ok(s) = TcpStream::connect(to) {
            held.push(s);
        }
    }
    assert!(held.len() > 1_000, "the attack could open {}", held.len());
    // Give the accept loop time to take what it will take.
    std::thread::sleep(Duration::from_secs(1));
    let during = open_handles(pid);
    println!(
        "open handles of the daemon: {before} before, {during} with {} idle connections held",
        held.len()
    );
    assert!(
        during < before + 64,
        "{during} handles open (from {before}): the idle connections took them"
    );
    // The refused ones are told why.
    let mut refused = TcpStream::connect(to).expect("connect");
    let answer = until_closed(&mut refused, Duration::from_secs(5)).expect("closed at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    honest_job(&api);
    sftp_login_works(&demo, &daemon);
    drop(held);
}

#[test]
fn tokenless_bodies_are_refused_before_they_are_read() {
    let demo = demo(100, |_| {});
    let daemon = demo.start();
    let api = Api::from_address(&daemon, honest());
    let to = address(&api);
    let body_len = 2 * 1024 * 1024 - 1;
    // The answer comes before a byte of the body is sent.
    let mut s = TcpStream::connect(to).expect("connect");
    s.write_all(
        format!("POST /accounts/demo/gdpr_erasure HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: {body_len}\r\n\r\n")
            .as_bytes(),
    )
    .expect("write");
    let answer = until_closed(&mut s, Duration::from_secs(10))
        .expect("answered and closed without waiting for the body");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("Bearer"), "{answer}");
    // 300 clients each sending 2 MiB - 1 bytes without a token, 30 at a time, while a job runs.
    let pid = daemon.child.id();
    let rss_before = kib(pid, "VmRSS:");
    let body = vec![b'a'; body_len];
    let attack: Vec<_> = (0..30)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let Ok(mut s) = TcpStream::connect(to) else {
                        continue;
                    };
                    let _ = s.write_all(
                        format!("POST /lcm HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n")
                            .as_bytes(),
                    );
                    let _ = s.write_all(&body);
                    let _ = until_closed(&mut s, Duration::from_secs(10));
                }
            })
        })
        .collect();
    honest_job(&api);
    for t in attack {
        t.join().expect("an attacking thread");
    }
    let peak = kib(pid, "VmHWM:");
    println!(
        "daemon memory: {rss_before} KiB before, peak {peak} KiB during 300 tokenless 2 MiB bodies"
    );
    assert!(
        peak < rss_before + 100 * 1024,
        "peak {peak} KiB from {rss_before} KiB: the bodies were buffered"
    );
}

#[test]
fn a_proxys_clients_are_throttled_apart_by_forwarded_address_token_and_account() {
    let demo = demo(
        100,
        http_settings("auth_failures = 3\ntrusted_proxies = [\"127.0.0.1\"]\n"),
    );
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let client = reqwest::blocking::Client::new();
    let status = |forwarded: &str, token: &str| {
        client
            .get(format!("{}/gdpr_jobs/1/status", api.base))
            .header("X-Forwarded-For", forwarded)
            .bearer_auth(token)
            .send()
            .expect("GET")
            .status()
    };
    // Three bad tokens from one client behind the proxy block that client only, even with a right token…
    for guess in ["guess1", "guess2", "guess3"] {
        assert_eq!(status("203.0.113.5", guess), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(status("203.0.113.5", TOKEN), StatusCode::TOO_MANY_REQUESTS);
    // …while another client of the same proxy is served (a spoofed hop before the proxy's is not believed).
    assert_eq!(
        status("203.0.113.5, 198.51.100.7", TOKEN),
        StatusCode::NOT_FOUND
    );
    // One bad token tried from many addresses is throttled as a token; the right token still opens.
    for i in 1..=3 {
        assert_eq!(
            status(&format!("192.0.2.{i}"), "stale-token"),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        status("192.0.2.9", "stale-token"),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status("192.0.2.9", TOKEN), StatusCode::NOT_FOUND);
    // Bad tokens naming one account from many addresses are throttled for that account; its customer is not.
    let post = |forwarded: &str, token: &str| {
        client
            .post(format!("{}/accounts/other/gdpr_erasure", api.base))
            .header("X-Forwarded-For", forwarded)
            .header("Content-Type", "text/csv")
            .bearer_auth(token)
            .body("EMAIL,a@b.com")
            .send()
            .expect("POST")
            .status()
    };
    for i in 1..=3 {
        assert_eq!(
            post(&format!("198.18.0.{i}"), &format!("guess-{i}")),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(post("198.18.0.9", "guess-9"), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(post("198.18.0.9", OTHER_TOKEN), StatusCode::ACCEPTED);
    // A proxy that forwards no address does not get its own address blocked for its clients' failures.
    for guess in ["guess4", "guess5", "guess6"] {
        let r = api.get("/gdpr_jobs/1/status", Some(guess));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        api.get("/gdpr_jobs/1/status", Some(TOKEN)).status(),
        StatusCode::NOT_FOUND
    );
    let log = daemon.log_text();
    assert!(!log.contains("guess"), "tokens are not logged");
}

#[test]
fn behind_an_untrusted_proxy_bad_tokens_lock_out_only_the_proxy_address() {
    // The behaviour trusted_proxies exists for: without it, every client of a proxy shares one address.
    let demo = demo(100, http_settings("auth_failures = 3\n"));
    let daemon = demo.start();
    let api = Api::new(&daemon);
    for _ in 0..3 {
        let r = api.get("/gdpr_jobs/1/status", Some("guess"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        api.get("/gdpr_jobs/1/status", Some(TOKEN)).status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another address is not affected.
    let other = Api::from_address(&daemon, honest());
    assert_eq!(
        other.get("/gdpr_jobs/1/status", Some(TOKEN)).status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn metrics_answer_split_requests_and_head_and_cap_connections() {
    let port = crate::harness::spare_port();
    let demo = Demo::new(20, |c| crate::harness::with_metrics(c, port));
    let _daemon = demo.start();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    // A request split across TCP packets.
    let mut s = TcpStream::connect(to).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.write_all(b"GET /met").expect("write");
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(b"rics HTTP/1.1\r\nHost: x\r\n").expect("write");
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(b"Connection: close\r\n\r\n").expect("write");
    let answer = until_closed(&mut s, Duration::from_secs(10)).expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("# TYPE gdprd_queue_depth gauge"),
        "{answer}"
    );
    // HEAD.
    let out = Command::new("curl")
        .args(["-s", "-I", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{to}/metrics"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    // Idle connections up to the cap; the next is refused at once, and the endpoint serves again once they go.
    let held: Vec<TcpStream> = (0..gdprd::metrics::MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(to).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut over = TcpStream::connect(to).expect("connect");
    let answer = until_closed(&mut over, Duration::from_secs(5)).expect("refused at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(held);
    wait_until(Duration::from_secs(10), "metrics served again", || {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{to}/metrics"))
            .output()
            .is_ok_and(|o| o.stdout == b"200")
    });
}

#[test]
fn accept_loops_back_off_when_file_handles_run_out() {
    let port = crate::harness::spare_port();
    let demo = demo(20, |c| {
        http_settings("header_timeout_seconds = 60\n")(c);
        crate::harness::with_metrics(c, port);
    });
    let daemon = demo.start();
    let api = Api::new(&daemon);
    let pid = daemon.child.id();
    // Few handles, then idle connections from several addresses until the daemon has none left.
    limit_handles(&daemon, open_handles(pid) as u32 + 40);
    let to = address(&api);
    let mut held = Vec::new();
    for a in 1..=8 {
        for _ in 0..16 {
            if let Ok(s) = connect_from(&format!("127.0.0.{a}"), to) {
                held.push(s);
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    // A scrape waits in the metrics listener's queue: every accept now fails with EMFILE.
    let metrics: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let waiting = TcpStream::connect(metrics).expect("connect");
    std::thread::sleep(Duration::from_millis(500));
    let ticks = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(pid) - ticks;
    println!("daemon CPU while out of handles: {used} ticks in 3 s");
    assert!(
        used < 100,
        "{used} clock ticks of CPU in 3 s: an accept loop spins"
    );
    wait_until(Duration::from_secs(5), "the backoff to be logged", || {
        daemon
            .log_text()
            .contains("cannot accept a connection (out of file handles?)")
    });
    drop(held);
    drop(waiting);
    wait_until(Duration::from_secs(10), "metrics served again", || {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{metrics}/metrics"))
            .output()
            .is_ok_and(|o| o.stdout == b"200")
    });
}
