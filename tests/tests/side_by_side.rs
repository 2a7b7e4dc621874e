//! The side-by-side benchmark harness in its quick mode, on the debug binaries: every
//! figure runs briefly, so the harness keeps working. Timings are printed, never
//! checked; what is checked is that every flow arrives, in time order through the relay.

#[path = "../benches/perf/mod.rs"]
mod perf;

#[test]
fn quick_side_by_side_run_measures_every_figure() -> anyhow::Result<()> {
    let options = perf::Options::from_args(["--quick".to_string()], tests::bin_dir())?;
    perf::run(&options)
}
