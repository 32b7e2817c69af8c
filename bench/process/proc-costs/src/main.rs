//! Microseconds of CPU (this process, user + system) per process and per
//! way of reading, over every process in /proc, ROUNDS times (default 10).
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU seconds used by this process so far.
fn cpu() -> f64 {
    // SAFETY: getrusage writes the zeroed rusage owned by this frame.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(r.ru_utime) + t(r.ru_stime)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let ps = pids();
    let mut buf = vec![0u8; 16384];
    let report = |what: &str, secs: f64, n: usize| {
        println!("{what:42} {:6.2} us", secs / (rounds * n) as f64 * 1e6);
    };
    println!("{} processes, {rounds} rounds; CPU per process:", ps.len());
    let open_read = |path: String, buf: &mut Vec<u8>| {
        if let Ok(mut f) = File::open(path) {
            let _ = f.read(buf);
        }
    };
    for file in ["stat", "statm", "status", "io", "limits", "cmdline"] {
        let c = cpu();
        for _ in 0..rounds {
            for p in &ps {
                open_read(format!("/proc/{p}/{file}"), &mut buf);
            }
        }
        report(&format!("{file}: open, read, close"), cpu() - c, ps.len());
        let kept: Vec<File> = ps
            .iter()
            .filter_map(|p| File::open(format!("/proc/{p}/{file}")).ok())
            .collect();
        let c = cpu();
        for _ in 0..rounds {
            for f in &kept {
                let _ = f.read_at(&mut buf, 0);
            }
        }
        report(
            &format!("{file}: kept open, read at 0"),
            cpu() - c,
            kept.len().max(1),
        );
    }
    let c = cpu();
    for _ in 0..rounds {
        for p in &ps {
            let _ = std::fs::metadata(format!("/proc/{p}/fd"));
        }
    }
    report("fd/: stat (its size counts the files)", cpu() - c, ps.len());
    let c = cpu();
    for _ in 0..rounds {
        for p in &ps {
            let _ = std::fs::read_link(format!("/proc/{p}/exe"));
        }
    }
    report("exe: readlink", cpu() - c, ps.len());
    let c = cpu();
    for _ in 0..rounds {
        for &p in &ps {
            let mut r = libc::rlimit64 {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: reads the limit into `r`; sets nothing.
            unsafe { libc::prlimit64(p as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut r) };
        }
    }
    report("prlimit(RLIMIT_NOFILE)", cpu() - c, ps.len());
}
