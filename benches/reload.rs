//! Reload latency: from the moment routes.toml is written (rename-over, the way most editors
//! and config-management tools save) until a request resolving through the table sees the new
//! route. Dominated by the watcher's debounce window (`QUIET` in src/routing/reload.rs).

// A benchmark states its preconditions with expect/panic: a failed one is a broken run.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard::routing::reload;
use switchyard::server;

fn table(prefix: &str) -> String {
    format!("[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"{prefix}\"\nbackend = \"e\"\n")
}

fn write_over(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn reload_latency(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, table("a/")).expect("write");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let state = rt
        .block_on(server::load_state(&path))
        .expect("valid config");
    rt.block_on(async { reload::spawn_watcher(state.reloadable()) });

    let mut group = c.benchmark_group("hot_reload");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("write_to_serving", |b| {
        let mut flip = false;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                flip = !flip;
                let (prefix, model) = if flip { ("b/", "b/x") } else { ("a/", "a/x") };
                let started = Instant::now();
                write_over(&path, &table(prefix));
                // Bounded: a reload that takes over 5 s is a failure, not a data point.
                while state.routes.load().resolve(model).is_none() {
                    assert!(
                        started.elapsed() < Duration::from_secs(5),
                        "reload never happened"
                    );
                    std::thread::sleep(Duration::from_micros(200));
                }
                total += started.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, reload_latency);
criterion_main!(benches);
